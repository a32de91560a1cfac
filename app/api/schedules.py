"""Schedules: an operation on cron slots, with each slot's outcome (``/api/v1/schedules``)."""

# No ``from __future__ import annotations``: FastAPI reads the access closures' annotations.

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.access import Asking, visible_operation
from app.api.deps import (
    Authenticated,
    CatalogDep,
    Limit,
    Offset,
    PrincipalDep,
    SecretBoxDep,
    SessionDep,
)
from app.dispatch import schedules as service
from app.entities.schedule import repository as schedules
from app.entities.schedule.models import Schedule, SlotOutcome
from app.entities.schedule.schemas import (
    CRON_PATTERN,
    ZONE_PATTERN,
    ScheduleCreate,
    SchedulePreview,
    ScheduleRead,
    ScheduleUpdate,
    SlotRead,
)
from app.entities.team.models import Role
from app.schemas import Page
from app.security.principal import Principal

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such schedule"}}


async def visible_schedule(
    session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, role: Role
) -> Schedule:
    """Not visible to the one asking: 404, as if it did not exist; role too low: 403."""
    schedule = await schedules.get(session, schedule_id)
    principal.require(schedule.team_id, role, f"schedule with id {schedule_id}")
    return schedule


def _schedule_access(role: Role) -> Any:
    async def schedule(session: SessionDep, principal: Asking, schedule_id: uuid.UUID) -> Schedule:
        return await visible_schedule(session, principal, schedule_id, role)

    return Depends(schedule)


ScheduleView = Annotated[Schedule, _schedule_access(Role.viewer)]
ScheduleOperate = Annotated[Schedule, _schedule_access(Role.operator)]


def read(schedule: Schedule) -> ScheduleRead:
    """The schedule as shown: secrets left out, with its preview and next fire times."""
    text, upcoming = service.preview(schedule.cron, schedule.timezone, count=5)
    data = {
        column: getattr(schedule, column)
        for column in ScheduleRead.model_fields
        if column not in {"values", "preview", "next"}
    }
    return ScheduleRead(**data, values=service.shown_values(schedule), preview=text, next=upcoming)


@router.get("", response_model=Page[ScheduleRead], summary="Schedules, by name")
async def list_schedules(
    session: SessionDep,
    principal: PrincipalDep,
    team: uuid.UUID | None = None,
    entity: uuid.UUID | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[ScheduleRead]:
    rows, total = await schedules.page(
        session, principal.visible_teams, team=team, entity=entity, limit=limit, offset=offset
    )
    items = [read(row) for row in rows]
    return Page[ScheduleRead](items=items, total=total, limit=limit, offset=offset)


# Beside the router, not under it: "/api/v1/schedules/preview" would also be the path of
# a schedule whose id is "preview", and other methods on it would answer 422, not 405.
preview_router = APIRouter(prefix="/api/v1", tags=["schedules"], dependencies=[Authenticated])


@preview_router.get(
    "/cron-preview", response_model=SchedulePreview, summary="Explain a cron expression"
)
async def preview(
    cron: Annotated[str, Query(min_length=9, max_length=200, pattern=CRON_PATTERN)],
    timezone: Annotated[str, Query(max_length=64, pattern=ZONE_PATTERN)] = "UTC",
    count: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SchedulePreview:
    """'At 02:00 every day (Europe/Paris), next: ...'; a bad expression or zone is a 422."""
    text, upcoming = service.preview(cron, timezone, count, where="query")
    return SchedulePreview(text=text, next=upcoming)


@router.post(
    "",
    response_model=ScheduleRead,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such operation"}, 403: {"description": "Not an operator"}},
    summary="Schedule an operation",
    description="The values are validated as a run's would be, and sent with every run. "
    "A bad cron expression or time zone is a 422 naming the field.",
)
async def create_schedule(
    session: SessionDep,
    principal: PrincipalDep,
    catalog: CatalogDep,
    box: SecretBoxDep,
    body: ScheduleCreate,
) -> ScheduleRead:
    operation = await visible_operation(session, principal, body.operation_id, Role.viewer)
    schedule = await service.create(session, catalog, box, principal, operation, body)
    return read(schedule)


@router.get("/{schedule_id}", response_model=ScheduleRead, responses=NOT_FOUND)
async def get_schedule(schedule: ScheduleView) -> ScheduleRead:
    return read(schedule)


@router.patch("/{schedule_id}", response_model=ScheduleRead, responses=NOT_FOUND)
async def change_schedule(
    session: SessionDep,
    principal: PrincipalDep,
    catalog: CatalogDep,
    box: SecretBoxDep,
    schedule: ScheduleOperate,
    body: ScheduleUpdate,
) -> ScheduleRead:
    schedule = await service.change(session, catalog, box, principal, schedule, body)
    return read(schedule)


@router.post("/{schedule_id}/pause", response_model=ScheduleRead, responses=NOT_FOUND)
async def pause_schedule(
    session: SessionDep, principal: PrincipalDep, schedule: ScheduleOperate
) -> ScheduleRead:
    """Slots while paused are recorded as skipped."""
    return read(await service.set_paused(session, principal, schedule, True))


@router.post("/{schedule_id}/resume", response_model=ScheduleRead, responses=NOT_FOUND)
async def resume_schedule(
    session: SessionDep, principal: PrincipalDep, schedule: ScheduleOperate
) -> ScheduleRead:
    return read(await service.set_paused(session, principal, schedule, False))


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_schedule(
    session: SessionDep, principal: PrincipalDep, schedule: ScheduleOperate
) -> Response:
    await service.remove(session, principal, schedule)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{schedule_id}/slots",
    response_model=Page[SlotRead],
    responses=NOT_FOUND,
    summary="A schedule's slots, newest first: fired (with its run), skipped or missed",
)
async def list_slots(
    session: SessionDep,
    schedule: ScheduleView,
    outcome: SlotOutcome | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[SlotRead]:
    rows, total = await schedules.slots_page(
        session, schedule.id, outcome=outcome, limit=limit, offset=offset
    )
    items = [SlotRead.model_validate(row) for row in rows]
    return Page[SlotRead](items=items, total=total, limit=limit, offset=offset)
