"""The team's notification targets: list, add, change, delete, "send test" (its outcome
inline), and each target's delivery log with the receivers' codes."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from app.api.deps import PageUser, SecretBoxDep, SessionDep, SignedIn, StateDep
from app.api.notifications import TargetAdmin, TargetTest, TargetView
from app.db import commit_and_yield
from app.dispatch import notifications as notify
from app.dispatch.accounts import teams_to_own
from app.entities.notification import repository as notifications
from app.entities.notification.models import NotificationTarget
from app.entities.notification.schemas import ENDED, TargetCreate, TargetUpdate
from app.entities.team import repository as teams
from app.errors import InvalidInput, NotFound
from app.security.principal import Principal
from app.web._paging import PAGE_SIZE, PageNumber, offset, pager
from app.web._render import CheckedForm, PageRoute, is_htmx, redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])


@router.get("/notifications", name="notifications_page")
async def notifications_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    team: uuid.UUID | None = None,
    page: PageNumber = 1,
) -> Response:
    return await _list(request, session, principal, team, page, {}, None, 200)


async def _list(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    team: uuid.UUID | None,
    page: int,
    form: dict[str, Any],
    error: str | None,
    status_code: int,
) -> Response:
    rows, total = await notifications.targets_page(
        session, principal.visible_teams, team, PAGE_SIZE, offset(page)
    )
    names = {t.id: t.name for t in await teams.listed(session, principal.visible_teams)}
    context = {
        "targets": rows, **pager(page, total), "team": team,
        "team_names": names, "own_teams": await teams_to_own(session, principal),
        "statuses": ENDED, "form": form, "error": error,
    }  # fmt: skip
    return render(request, "notifications/list.html", context, status_code)


def _listed(form: FormData, name: str) -> list[str]:
    """A list field: checkboxes sent once each, or text separated by commas or lines."""
    values = [v for v in form.getlist(name) if isinstance(v, str)]
    return [
        part.strip() for v in values for part in v.replace("\n", ",").split(",") if part.strip()
    ]


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _posted(form: FormData) -> dict[str, Any]:
    """The form as the API's body takes it; empty fields left out (a secret kept)."""
    data: dict[str, Any] = {
        "team_id": _text(form, "team_id"), "name": _text(form, "name"),
        "kind": _text(form, "kind"), "url": _text(form, "url"), "secret": _text(form, "secret"),
        "addresses": _listed(form, "addresses"), "entity_kinds": _listed(form, "entity_kinds"),
        "operations": _listed(form, "operations"), "statuses": _listed(form, "statuses"),
        "enabled": form.get("enabled") == "true",
    }  # fmt: skip
    return {key: value for key, value in data.items() if value is not None}


def _message(error: ValidationError | InvalidInput) -> str:
    errors = error.errors() if isinstance(error, ValidationError) else error.errors
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'form'}: {e['msg']}"
                     for e in errors)  # fmt: skip


def _validated(model: type[BaseModel], data: dict[str, Any]) -> BaseModel | str:
    try:
        return model.model_validate(data, strict=False)  # form text
    except ValidationError as error:
        return _message(error)


@router.post("/notifications", name="notifications_create")
async def notifications_create(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    box: SecretBoxDep,
    posted: CheckedForm,
) -> Response:
    data = _posted(posted)
    body = _validated(TargetCreate, data)
    if isinstance(body, str):
        return await _list(request, session, principal, None, 1, data, body, 422)
    assert isinstance(body, TargetCreate)
    try:
        target = await notify.create_target(session, principal, box, body)
    except InvalidInput as error:
        return await _list(request, session, principal, None, 1, data, _message(error), 422)
    except NotFound as error:  # a team that is not theirs to administer
        return await _list(request, session, principal, None, 1, data, error.message, 422)
    return redirect(request, str(request.url_for("notification_page", target_id=target.id)))


@router.get("/notifications/{target_id}", name="notification_page")
async def notification_page(
    request: Request, session: SessionDep, target: TargetView, page: PageNumber = 1
) -> Response:
    return await _show(request, session, target, page, None, 200)


async def _show(
    request: Request,
    session: AsyncSession,
    target: NotificationTarget,
    page: int,
    error: str | None,
    status_code: int,
) -> Response:
    rows, total = await notifications.deliveries_page(session, target.id, PAGE_SIZE, offset(page))
    team = await teams.get(session, target.team_id)
    context = {
        "target": target, "team_name": team.name if team else "", "deliveries": rows,
        **pager(page, total), "statuses": ENDED, "error": error,
    }  # fmt: skip
    return render(request, "notifications/show.html", context, status_code)


@router.post("/notifications/{target_id}", name="notification_update")
async def notification_update(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    box: SecretBoxDep,
    target: TargetAdmin,
    posted: CheckedForm,
) -> Response:
    data = {k: v for k, v in _posted(posted).items() if k not in ("team_id", "kind")}
    if target.kind != "webhook":
        data.pop("url", None)
    if not data.get("addresses"):
        data.pop("addresses", None)  # none given: the target keeps its own (a webhook has none)
    body = _validated(TargetUpdate, data)
    if isinstance(body, str):
        return await _show(request, session, target, 1, body, 422)
    assert isinstance(body, TargetUpdate)
    try:
        await notify.change_target(session, principal, box, target, body)
    except InvalidInput as error:
        return await _show(request, session, target, 1, _message(error), 422)
    return redirect(request, str(request.url_for("notification_page", target_id=target.id)))


@router.post("/notifications/{target_id}/delete", name="notification_delete")
async def notification_delete(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    target: TargetAdmin,
    posted: CheckedForm,
) -> Response:
    await notify.remove_target(session, principal, target)
    return redirect(request, str(request.url_for("notifications_page")))


@router.post("/notifications/{target_id}/test", name="notification_test")
async def notification_test(
    request: Request,
    session: SessionDep,
    state: StateDep,
    target: TargetTest,
    posted: CheckedForm,
) -> Response:
    """HTMX: the outcome, inline; a plain browser: back to the page, which logs it."""
    await commit_and_yield(session)  # hold nothing while the receiver answers
    delivery = await notify.send_test(state.sessionmaker, state.settings, state.secret_box, target)
    if not is_htmx(request):
        return redirect(request, str(request.url_for("notification_page", target_id=target.id)))
    return render(request, "notifications/_test_result.html", {"delivery": delivery})
