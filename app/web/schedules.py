"""Schedule pages: the list, the form with its live preview, a schedule with its slots."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.access import OperationRun
from app.api.deps import CatalogDep, PageUser, SecretBoxDep, SessionDep, SignedIn
from app.api.schedules import ScheduleOperate, ScheduleView, read
from app.catalog.registry import Catalog
from app.dispatch import schedules as service
from app.entities.entity import repository as entities
from app.entities.operation.models import Operation
from app.entities.schedule import repository as schedules
from app.entities.schedule.models import MissedPolicy, Schedule, ScheduleSlot
from app.entities.schedule.schemas import ScheduleCreate
from app.entities.team.models import Role
from app.errors import AegirError, InvalidInput
from app.security.crypto import SecretBox
from app.security.principal import Principal
from app.web import forms
from app.web._paging import PAGE_SIZE, PageNumber, offset, pager
from app.web._render import CheckedForm, PageRoute, redirect, render
from app.web.runs import _read_values, _run_form, _show_errors

router = APIRouter(include_in_schema=False, route_class=PageRoute, dependencies=[SignedIn])

SETTINGS = ("name", "cron", "timezone", "missed_policy", "keep_last", "keep_days")


@router.get("/schedules", name="schedules_page")
async def schedules_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    entity: uuid.UUID | None = None,
    page: PageNumber = 1,
) -> Response:
    rows, total = await schedules.page(
        session, principal.visible_teams, entity=entity,
        limit=PAGE_SIZE, offset=offset(page),
    )  # fmt: skip
    named = await entities.get_many(session, [row.entity_id for row in rows])
    context = {
        "schedules": [read(row) for row in rows],
        "named": named,
        "plural": {kind.name: kind.plural for kind in catalog.kinds.values()},
        **pager(page, total),
        "entity": entity,
    }
    return render(request, "schedules/list.html", context)


@router.get("/schedules/preview", name="schedule_preview")
async def schedule_preview(
    request: Request,
    cron: Annotated[str, Query(max_length=200)] = "",
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
) -> Response:
    """The form's live preview (HTMX): the expression in words and its next fire times."""
    text, error = "", None
    try:
        text, _times = service.preview(cron, timezone or "UTC", 5, where="query")
    except InvalidInput as problem:
        error = problem.errors[0]["msg"]
    return render(request, "schedules/_preview.html", {"text": text, "error": error})


async def _form(
    session: AsyncSession, catalog: Catalog, operation: Operation, posted: Any = None
) -> dict[str, Any]:
    form = await _run_form(session, catalog, operation)
    form["confirm"] = None  # confirmed when scheduled, not at each slot
    given = {name: posted.get(name, "") for name in SETTINGS} if posted else {}
    form["settings"] = {"timezone": "UTC", "missed_policy": MissedPolicy.run_once, **given}
    form["policies"] = list(MissedPolicy)
    form["retention"] = any(catalog.task_of(form["kind"], key).name == "backup_archive"
                            for key in form["op_type"].steps)  # fmt: skip
    return form


@router.get("/operations/{operation_id}/schedule", name="schedule_form")
async def schedule_form(
    request: Request, session: SessionDep, catalog: CatalogDep, operation: OperationRun
) -> Response:
    return render(request, "schedules/form.html", await _form(session, catalog, operation))


@router.post("/operations/{operation_id}/schedule", name="schedule_submit")
async def schedule_submit(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    box: SecretBoxDep,
    posted: CheckedForm,
    operation: OperationRun,
) -> Response:
    form = await _form(session, catalog, operation, posted)
    values, errors = _read_values(posted, form)
    if not errors:
        try:
            schedule = await _create(session, catalog, box, principal, operation, form, values)
        except InvalidInput as error:
            errors = {_field(e["loc"]): e["msg"] for e in reversed(error.errors)}
        except AegirError as error:
            errors = {"": error.message}
        else:
            return redirect(request, str(request.url_for("schedule_page", schedule_id=schedule.id)))
    # Nothing was written: everything is checked before the schedule is saved.
    _show_errors(posted, form, errors)
    return render(request, "schedules/form.html", form, 422)


async def _create(
    session: AsyncSession,
    catalog: Catalog,
    box: SecretBox,
    principal: Principal,
    operation: Operation,
    form: dict[str, Any],
    values: dict[str, Any],
) -> Schedule:
    given = {**_settings(form["settings"]), "operation_id": operation.id, "values": values}
    try:
        body = ScheduleCreate.model_validate(given, strict=False)  # form text
    except ValidationError as error:
        raise InvalidInput.from_validation(error, ["body"]) from None
    return await service.create(session, catalog, box, principal, operation, body)


def _field(loc: list[str | int]) -> str:
    """A task's field is named task.field in the form; a schedule's setting by its name."""
    return forms.error_name(loc, 2 if loc[1:2] == ["values"] else 1)


def _settings(given: dict[str, Any]) -> dict[str, Any]:
    """The form's text as the schema's input: empty numbers are none."""
    return {name: (value if value != "" else None) for name, value in given.items()
            if not (name in {"timezone", "missed_policy"} and value == "")}  # fmt: skip


@router.get("/schedules/{schedule_id}", name="schedule_page")
async def schedule_page(
    request: Request,
    session: SessionDep,
    principal: PageUser,
    catalog: CatalogDep,
    schedule: ScheduleView,
    page: PageNumber = 1,
) -> Response:
    slots, total = await schedules.slots_page(
        session, schedule.id, limit=PAGE_SIZE, offset=offset(page)
    )
    entity = await entities.get(session, schedule.entity_id)
    kind = catalog.kinds.get(entity.kind)
    context = {
        "schedule": read(schedule),
        "entity": entity,
        "kind": kind,
        "slots": slots,
        "statuses": await schedules.runs_status(session, _run_ids(slots)),
        **pager(page, total),
        "can_change": principal.can(schedule.team_id, Role.operator),
    }
    return render(request, "schedules/show.html", context)


def _run_ids(slots: list[ScheduleSlot]) -> list[uuid.UUID]:
    return [i for slot in slots for i in (slot.run_id, slot.prune_run_id) if i is not None]


@router.post("/schedules/{schedule_id}/pause", name="schedule_pause")
async def schedule_pause(
    request: Request, session: SessionDep, principal: PageUser, _posted: CheckedForm,
    schedule: ScheduleOperate,
) -> Response:  # fmt: skip
    await service.set_paused(session, principal, schedule, not schedule.paused)
    return redirect(request, str(request.url_for("schedule_page", schedule_id=schedule.id)))


@router.post("/schedules/{schedule_id}/delete", name="schedule_delete")
async def schedule_delete(
    request: Request, session: SessionDep, principal: PageUser, _posted: CheckedForm,
    schedule: ScheduleOperate,
) -> Response:  # fmt: skip
    await service.remove(session, principal, schedule)
    return redirect(request, str(request.url_for("schedules_page")))
