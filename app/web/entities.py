"""Entity pages, for every kind in the catalogue: list, create, show, change, delete, act."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.api.access import EntityAdmin, EntityOperate, EntityView, PathKind
from app.api.deps import CatalogDep, PageUser, RedisDep, SessionDep, SignedIn, client_ip
from app.catalog.types import ActionType, EntityKind
from app.dispatch import actions, views
from app.dispatch import entities as entity_service
from app.dispatch.accounts import teams_to_own
from app.dispatch.audit import record
from app.dispatch.preconditions import state_reason
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.entity.schemas import EntityUpdate, create_model_for
from app.entities.run import repository as runs
from app.entities.task import repository as task_instances
from app.errors import Conflict, InvalidInput, NotFound
from app.security.principal import Principal
from app.web import forms
from app.web._paging import PageNumber, offset, pager
from app.web._render import CheckedForm, PageRoute, is_htmx, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

PAGE_SIZE = 25
CHOICES = 500  # entities offered in a reference select
Search = Annotated[str, Query(max_length=253)]


@router.get("/{plural}", name="entity_list")
async def entity_list(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    kind: PathKind,
    name: Search = "",
    page: PageNumber = 1,
) -> Response:
    teams = principal.visible_teams
    rows, total = await entities.page(
        session, kind.name, name, PAGE_SIZE, offset(page, PAGE_SIZE), teams
    )
    items = await views.entity_rows(session, principal, kind, rows)
    context = {
        "kind": kind,
        "items": items,
        "name": name,
        **pager(page, total, PAGE_SIZE),
        "can_create": bool(await teams_to_own(session, principal)),
    }
    template = "entities/_rows.html" if _fragment(request) else "entities/list.html"
    return render(request, template, context)


def _fragment(request: Request) -> bool:
    """An HTMX request for the rows alone (filtering as you type, live refresh)."""
    return is_htmx(request) and request.headers.get("hx-target") == "rows"


async def _reference_choices(
    session: AsyncSession, principal: Principal, kind: EntityKind
) -> dict[str, list[tuple[str, str]]]:
    choices: dict[str, list[tuple[str, str]]] = {}
    for role, ref in kind.references.items():
        rows, _ = await entities.page(session, ref.kind, None, CHOICES, 0, principal.visible_teams)
        choices[role] = [(str(row.id), row.name) for row in rows]
    return choices


def _reference_widgets(
    kind: EntityKind, choices: dict[str, list[tuple[str, str]]], current: dict[str, str]
) -> list[forms.Widget]:
    made = []
    for role, ref in kind.references.items():
        options = choices[role]
        if not ref.required or len(options) != 1:
            options = [("", f"(choose a {ref.kind})" if ref.required else "(none)"), *options]
        made.append(
            forms.Widget(
                name=f"references.{role}",
                label=forms.humanise(role),
                kind="select",
                help=ref.description or f"A {ref.kind}.",
                value=current.get(role, ""),
                options=options,
                required=ref.required,
                optional=not ref.required,
            )
        )
    return made


def _name_widget(kind: EntityKind, value: str) -> forms.Widget:
    schema = TypeAdapter(kind.name_type).json_schema()
    return forms.Widget(
        name="name",
        label="Name",
        kind="text",
        help=schema.get("description", ""),
        value=value,
        required=True,
    )


async def _create_form(
    session: AsyncSession, principal: Principal, kind: EntityKind
) -> dict[str, Any]:
    teams = await teams_to_own(session, principal)
    team = forms.Widget(
        name="team_id",
        label="Team",
        kind="select",
        help="The team that owns it; its members see it.",
        options=[(str(t.id), t.name) for t in teams],
        required=True,
    )
    choices = await _reference_choices(session, principal, kind)
    return {
        "kind": kind,
        "name": _name_widget(kind, ""),
        "team": team,
        "fields": forms.widgets("fields", kind.fields, {}),
        "references": _reference_widgets(kind, choices, {}),
        "missing": [
            (role, ref.kind)
            for role, ref in kind.references.items()
            if ref.required and not choices[role]
        ],
    }


@router.get("/{plural}/new", name="entity_new")
async def entity_new(
    request: Request, session: SessionDep, principal: PageUser, kind: PathKind
) -> Response:
    form = await _create_form(session, principal, kind)
    return render(request, "entities/new.html", form)


@router.post("/{plural}/new", name="entity_create")
async def entity_create(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    posted: CheckedForm,
    kind: PathKind,
) -> Response:
    form = await _create_form(session, principal, kind)
    every = [form["name"], form["team"], *form["fields"], *form["references"]]
    try:
        body = _create_body(posted, form)
        entity = await entity_service.create(session, principal, kind, body)
    except (forms.FormError, InvalidInput, Conflict, NotFound) as error:
        await session.rollback()  # nothing half-written
        _keep_typed(posted, every)
        form["errors"] = forms.attach(every, _errors(error))
        return render(request, "entities/new.html", form, 422)
    url = request.url_for("entity_page", plural=kind.plural, entity_id=entity.id)
    return redirect(request, str(url))


def _errors(error: forms.FormError | InvalidInput | Conflict | NotFound) -> dict[str, str]:
    """Messages by form name: a taken name is the name's problem, a reference that is gone
    (deleted since the form was shown) the reference's."""
    if isinstance(error, forms.FormError):
        return error.errors
    if isinstance(error, InvalidInput):
        return _messages(error.errors, 1)  # past "body"
    if isinstance(error, NotFound):
        where, _, message = error.message.partition(": ")
        if where.startswith("references.") or where == "team_id":
            return {where: message}
        return {"name": error.message}
    return {"name": error.message}


def _keep_typed(posted: Any, every: list[forms.Widget]) -> None:
    """Show back what was typed, except secrets."""
    for widget in every:
        if widget.kind == "checkbox":
            widget.checked = posted.get(widget.name) == "true" or "true" in posted.getlist(
                widget.name
            )
        elif widget.kind != "password":
            value = posted.getlist(widget.name)
            widget.value = str(value[-1]) if value else ""


def _create_body(posted: Any, form: dict[str, Any]) -> Any:
    kind: EntityKind = form["kind"]
    data: dict[str, Any] = {
        "name": str(posted.get("name", "")).strip(),
        "team_id": posted.get("team_id") or None,
        "fields": forms.read(posted, form["fields"], only_changed=False),
        "references": {role: posted.get(f"references.{role}") or None for role in kind.references},
    }
    try:
        return create_model_for(kind).model_validate(data)
    except ValidationError as error:
        raise forms.FormError(_messages(error.errors(include_url=False), 0)) from None


def _messages(errors: Any, prefix: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in errors:
        name = forms.error_name(error["loc"], prefix)
        found.setdefault(name, error["msg"])
    return found


@router.get("/{plural}/{entity_id}", name="entity_page")
async def entity_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    kind: PathKind,
    entity: EntityView,
) -> Response:
    detail = await views.entity_detail(session, principal, kind, entity)
    history, total = await runs.newest_page(
        session, entity_id=entity.id, operation_id=None, status=None, limit=20, offset=0,
        teams=None, tasks=False,
    )  # fmt: skip
    context = {
        "kind": kind,
        "entity": detail,
        "history": history,
        "history_total": total,
        "labels": {name: op.label for name, op in kind.operations.items()},
        "catalog": catalog,
        "summaries": await _summaries(session, kind, entity.id),
        "blocked": blocked_reasons(kind, detail.state),
    }
    template = "entities/_live.html" if _live_fragment(request) else "entities/show.html"
    return render(request, template, context)


async def _summaries(
    session: AsyncSession, kind: EntityKind, entity_id: uuid.UUID
) -> list[tuple[str, Any, tuple[str, ...]]]:
    """The kind's ``summaries`` (label, value, columns) from its tasks' outputs."""
    if not kind.summaries:
        return []
    outputs = {
        task.key: task.outputs for task in await task_instances.of_entity(session, entity_id)
    }
    return [(s.label, s.value(outputs), s.columns) for s in kind.summaries]


def _live_fragment(request: Request) -> bool:
    return is_htmx(request) and request.headers.get("hx-target") == "entity-live"


async def _edit_form(
    session: AsyncSession, principal: Principal, kind: EntityKind, entity: Entity
) -> dict[str, Any]:
    choices = await _reference_choices(session, principal, kind)
    current = {ref.role: str(ref.target_id) for ref in entity.references}
    owned = await teams_to_own(session, principal)
    team = forms.Widget(
        name="team_id",
        label="Team",
        kind="select",
        help="The team that owns it; move it to another team you administer.",
        options=[(str(t.id), t.name) for t in owned],
        value=str(entity.team_id),
        required=True,
    )
    return {
        "kind": kind,
        # Plain values: a failed change rolls the session back, which expires the row.
        "entity": SimpleNamespace(id=entity.id, name=entity.name),
        "name": _name_widget(kind, entity.name),
        # Offered when there is another team to move it to.
        "team": team if len(team.options) > 1 else None,
        "fields": forms.widgets("fields", kind.fields, entity.attributes),
        "references": _reference_widgets(kind, choices, current),
    }


@router.get("/{plural}/{entity_id}/edit", name="entity_edit")
async def entity_edit(
    request: Request, session: SessionDep, principal: PageUser, kind: PathKind, entity: EntityAdmin
) -> Response:
    return render(request, "entities/edit.html", await _edit_form(session, principal, kind, entity))


@router.post("/{plural}/{entity_id}/edit", name="entity_update")
async def entity_update(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    posted: CheckedForm,
    kind: PathKind,
    entity: EntityAdmin,
) -> Response:
    entity_id = entity.id  # kept: a failed change rolls back, which expires the row
    form = await _edit_form(session, principal, kind, entity)
    every = [form["name"], *form["fields"], *form["references"]]
    if form["team"] is not None:
        every.append(form["team"])
    try:
        body = EntityUpdate(
            name=str(posted.get("name", "")).strip(),
            team_id=uuid.UUID(str(posted.get("team_id"))) if posted.get("team_id") else None,
            fields=forms.read(posted, form["fields"], only_changed=False),
            references={
                role: uuid.UUID(str(value))
                for role in kind.references
                if (value := posted.get(f"references.{role}"))
            },
        )
        await entity_service.change(session, principal, kind, entity, body)
    except (forms.FormError, InvalidInput, Conflict, NotFound) as error:
        await session.rollback()
        _keep_typed(posted, every)
        form["errors"] = forms.attach(every, _errors(error))
        return render(request, "entities/edit.html", form, 422)
    except ValueError:
        raise NotFound("no such reference") from None
    return redirect(
        request, str(request.url_for("entity_page", plural=kind.plural, entity_id=entity_id))
    )


@router.post("/{plural}/{entity_id}/delete", name="entity_delete")
async def entity_delete(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    posted: CheckedForm,
    kind: PathKind,
    entity: EntityAdmin,
) -> Response:
    if posted.get("confirm") != entity.name:
        raise InvalidInput.field(["confirm"], f"type {entity.name} to confirm")
    await entity_service.remove(session, principal, kind, entity)
    return redirect(request, str(request.url_for("entity_list", plural=kind.plural)))


@router.post("/{plural}/{entity_id}/actions/{action_name}", name="entity_action")
async def entity_action(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    redis: RedisDep,
    posted: CheckedForm,
    kind: PathKind,
    entity: EntityOperate,
    action_name: str,
) -> Response:
    """Run the action within the click; a link in its answer is where the browser goes."""
    action = kind.actions.get(action_name)
    if action is None:
        raise NotFound(f"a {kind.name} has no action {action_name}")
    record(session, principal, f"action.{action.name}", target_kind=kind.name,
           target_id=entity.id, team_id=entity.team_id, ip=client_ip(request))  # fmt: skip
    entity_id = entity.id  # kept: the action commits, which expires the row
    try:
        with metrics.action_timer(redis, kind.name, action.name):
            result = await actions.perform(session, redis, kind, entity_id, action)
    except actions.ActionFailed as failed:
        return _action_failed(request, kind, entity_id, action, failed)
    answer = result.model_dump(mode="json")
    if isinstance(answer.get("url"), str):
        return redirect(request, answer["url"])
    return render(request, "entities/_action_result.html", {"action": action, "answer": answer})


def _action_failed(
    request: Request,
    kind: EntityKind,
    entity_id: uuid.UUID,
    action: ActionType,
    failed: actions.ActionFailed,
) -> Response:
    """The failing task's own words, and a link to all it printed (a 502, as in the API)."""
    output = None
    if failed.output_id:
        output = request.url_for(
            "entity_action_output", plural=kind.plural, entity_id=entity_id,
            action_name=action.name, output_id=failed.output_id,
        )  # fmt: skip
    context = {"action": action, "message": failed.message, "output_url": output}
    template = "entities/_action_error.html" if is_htmx(request) else "entities/action_error.html"
    return render(request, template, context, 502)


@router.get(
    "/{plural}/{entity_id}/actions/{action_name}/output/{output_id}", name="entity_action_output"
)
async def entity_action_output(
    request: Request,
    redis: RedisDep,
    kind: PathKind,
    entity: EntityView,
    action_name: str,
    output_id: str,
) -> Response:
    """What a failed action printed, kept for an hour after it failed."""
    action = kind.actions.get(action_name)
    kept = await actions.failed_output(redis, output_id, entity.id) if action else None
    if action is None or kept is None or kept.get("action") != action_name:
        raise NotFound("no such output: it is kept for an hour after the action failed")
    context = {"kind": kind, "entity": entity, "action": action, "kept": kept}
    return render(request, "entities/action_output.html", context)


def blocked_reasons(kind: EntityKind, state: str | None) -> dict[str, str]:
    """Why each operation (``op:NAME``) or action (``action:NAME``) cannot run in the
    entity's state, for its disabled button."""
    found: dict[str, str] = {}
    for name, op in kind.operations.items():
        if reason := state_reason(kind, op.requires_state, state):
            found[f"op:{name}"] = reason[:1].upper() + reason[1:]
    for name, action in kind.actions.items():
        if reason := state_reason(kind, action.requires_state, state):
            found[f"action:{name}"] = reason[:1].upper() + reason[1:]
    return found
