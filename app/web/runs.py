"""Run forms generated from an operation's composed schema; run pages; the runs list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.access import OperationRun, RunOperate, RunView
from app.api.deps import (
    CatalogDep,
    PageUser,
    RedisDep,
    SecretBoxDep,
    SessionDep,
    SignedIn,
    StateDep,
    client_ip,
)
from app.catalog.registry import Catalog
from app.dispatch import runs as run_service
from app.dispatch import views
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.operation.models import Operation
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import RunStatus
from app.entities.team.models import Role
from app.errors import Conflict, InvalidInput, NotFound
from app.security.principal import Principal
from app.web import forms
from app.web._paging import PAGE_SIZE, PageNumber, offset, pager
from app.web._render import CheckedForm, PageRoute, is_htmx, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

LOG_PAGE = 5000
CHOICES = 500
StatusFilter = Annotated[RunStatus | None, Query()]


async def _choices(session: AsyncSession, entity: Entity, kind: str) -> list[tuple[str, str]]:
    """The names a field that refers to ``kind`` may hold: that kind's entities in the
    entity's own team (what the run request accepts)."""
    rows, _ = await entities.page(session, kind, None, CHOICES, 0, {entity.team_id})
    return [("", f"(choose a {kind})"), *[(row.name, row.name) for row in rows]]


async def _run_form(
    session: AsyncSession, catalog: Catalog, operation: Operation
) -> dict[str, Any]:
    """One group of inputs per task, pre-filled with the task's current values."""
    kind, op_type = run_service.operation_type(catalog, operation)
    detail = await views.operation_detail(session, catalog, operation)
    shown = {task.key: task for task in detail.tasks}
    groups = []
    for key in op_type.task_keys:
        task_type = catalog.task_of(kind, key)
        model = task_type.fields
        choices = {
            name: await _choices(session, operation.entity, refers_to)
            for name, refers_to in task_type.reference_fields().items()
        }
        groups.append(
            {
                "key": key,
                "label": task_type.label,
                "description": task_type.description,
                "runs": key in op_type.steps,
                "fields": forms.widgets(key, model, shown[key].values, choices),
                "error": None,
            }
        )
    confirm = None
    if op_type.destructive:
        confirm = forms.Widget(
            name="confirm",
            label=f"Type {operation.entity.name} to confirm",
            kind="text",
            help="This operation is destructive.",
            required=True,
        )
    return {
        "operation": detail,
        "op_type": op_type,
        "kind": kind,
        "entity": operation.entity,
        "groups": groups,
        "confirm": confirm,
        "errors": {},
    }


@router.get("/operations/{operation_id}/run", name="run_form")
async def run_form(
    request: Request,
    session: SessionDep,
    catalog: CatalogDep,
    operation: OperationRun,
) -> Response:
    form = await _run_form(session, catalog, operation)
    return render(request, "runs/form.html", form)


@router.post("/operations/{operation_id}/run", name="run_submit")
async def run_submit(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    posted: CheckedForm,
    operation: OperationRun,
) -> Response:
    form = await _run_form(session, catalog, operation)
    values, errors = _read_values(posted, form)
    if form["confirm"] is not None and posted.get("confirm") != operation.entity.name:
        errors["confirm"] = f"type {operation.entity.name} exactly, to confirm"
    if not errors:
        try:
            run = await run_service.request(
                session, catalog, redis, box, principal, operation, values, client_ip(request)
            )
        except InvalidInput as error:
            errors = {forms.error_name(e["loc"], 2): e["msg"] for e in reversed(error.errors)}
        except (Conflict, NotFound) as error:
            errors = _beside_field(error.message)
        else:
            return redirect(request, str(request.url_for("run_page", run_id=run.id)))
    # Nothing was written: the values are checked before anything is saved or queued.
    _show_errors(posted, form, errors)
    return render(request, "runs/form.html", form, 422)


def _beside_field(message: str) -> dict[str, str]:
    """A 404 or 409 about one value ("values.upgrade.target_platform: ...") goes beside
    its field; any other above the form."""
    where, _, said = message.partition(": ")
    if where.startswith("values.") and said:
        return {where.removeprefix("values."): said}
    return {"": message}


def _read_values(posted: Any, form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for group in form["groups"]:
        try:
            values[group["key"]] = forms.read(posted, group["fields"], only_changed=True)
        except forms.FormError as error:
            errors.update(error.errors)
    return values, errors


def _show_errors(posted: Any, form: dict[str, Any], errors: dict[str, str]) -> None:
    widgets = [w for group in form["groups"] for w in group["fields"]]
    if form["confirm"] is not None:
        widgets.append(form["confirm"])
    for widget in widgets:  # what was typed stays, except secrets
        if widget.kind == "checkbox":
            widget.checked = "true" in posted.getlist(widget.name)
        elif widget.kind != "password":
            typed = posted.getlist(widget.name)
            widget.value = str(typed[-1]) if typed else widget.value
    left = forms.attach(widgets, errors)
    for group in form["groups"]:
        group["error"] = left.pop(group["key"], None)
    form["errors"] = errors
    form["general"] = list(left.values())


async def _run_context(
    session: AsyncSession, principal: Principal, catalog: Catalog, run: Run
) -> dict[str, Any]:
    entity = await entities.get(session, run.entity_id)
    kind = catalog.kinds.get(entity.kind)
    op_type = kind.operations.get(run.operation_type) if kind else None
    return {
        "run": run,
        "entity": entity,
        "kind": kind,
        "op_label": op_type.label if op_type else run.operation_type,
        "labels": {key: catalog.tasks[t].label for key, t in (kind.tasks if kind else {}).items()},
        "can_cancel": principal.can(entity.team_id, Role.operator),
    }


@router.get("/runs/{run_id}", name="run_page")
async def run_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    run: RunView,
) -> Response:
    context = await _run_context(session, principal, catalog, run)
    return render(request, "runs/show.html", context)


@router.get("/runs/{run_id}/summary", name="run_summary")
async def run_summary(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    run: RunView,
) -> Response:
    context = await _run_context(session, principal, catalog, run)
    return render(request, "runs/_summary.html", {**context, "fragment": True})


@router.post("/runs/{run_id}/cancel", name="run_cancel")
async def run_cancel(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    redis: RedisDep,
    posted: CheckedForm,
    run: RunOperate,
) -> Response:
    run = await run_service.cancel(session, redis, principal, run, client_ip(request))
    if not is_htmx(request):
        return redirect(request, str(request.url_for("run_page", run_id=run.id)))
    context = await _run_context(session, principal, catalog, run)
    return render(request, "runs/_summary.html", {**context, "fragment": True})


@router.get("/runs/{run_id}/log.txt", name="run_log_text")
async def run_log_text(state: StateDep, run: RunView) -> Response:
    """The whole log as plain text, read page by page as it is sent."""
    run_id, maker = run.id, state.sessionmaker

    async def lines() -> AsyncIterator[str]:
        after = 0
        while True:
            async with maker() as reader:
                page = await runs.lines_after(reader, run_id, after, LOG_PAGE)
            if not page:
                return
            yield "".join(f"{line.line}\n" for line in page)
            after = page[-1].seq

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


@router.get("/runs", name="runs_page")
async def runs_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    status: StatusFilter = None,
    page: PageNumber = 1,
) -> Response:
    rows, total = await runs.newest_page(
        session, entity_id=None, operation_id=None, status=status, limit=PAGE_SIZE,
        offset=offset(page), teams=principal.visible_teams, tasks=False,
    )  # fmt: skip
    named = await entities.get_many(session, list({run.entity_id for run in rows}))
    context = {
        "runs": rows,
        "named": named,
        "status": status,
        "statuses": list(RunStatus),
        **pager(page, total),
        "plural": {kind.name: kind.plural for kind in catalog.kinds.values()},
    }
    fragment = is_htmx(request) and request.headers.get("hx-target") == "rows"
    return render(request, "runs/_rows.html" if fragment else "runs/list.html", context)
