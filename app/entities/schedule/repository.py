"""Every query on schedules and their slots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.run.models import Run
from app.entities.run.states import RunStatus
from app.entities.schedule.models import Schedule, ScheduleSlot, SlotOutcome
from app.errors import NotFound


async def get(session: AsyncSession, schedule_id: uuid.UUID) -> Schedule:
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id}")
    return schedule


def add(session: AsyncSession, schedule: Schedule) -> None:
    session.add(schedule)


async def remove(session: AsyncSession, schedule: Schedule) -> None:
    await session.execute(delete(Schedule).where(Schedule.id == schedule.id))


async def page(
    session: AsyncSession,
    teams: set[uuid.UUID] | None,
    *,
    team: uuid.UUID | None = None,
    entity: uuid.UUID | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Schedule], int]:
    """A page of schedules by name; ``teams`` limits them to those teams (None: all)."""
    query = select(Schedule)
    if teams is not None:
        query = query.where(Schedule.team_id.in_(teams))
    if team is not None:
        query = query.where(Schedule.team_id == team)
    if entity is not None:
        query = query.where(Schedule.entity_id == entity)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.scalars(
        query.order_by(Schedule.name, Schedule.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def with_last_slot(session: AsyncSession) -> list[tuple[Schedule, datetime | None]]:
    """Every schedule with the instant of its latest recorded slot: the scheduler's view."""
    last = (
        select(ScheduleSlot.schedule_id, func.max(ScheduleSlot.slot_at).label("last"))
        .group_by(ScheduleSlot.schedule_id)
        .subquery()
    )
    query = select(Schedule, last.c.last).outerjoin(last, last.c.schedule_id == Schedule.id)
    return [(schedule, at) for schedule, at in await session.execute(query)]


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def record_slot(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    slot_at: datetime,
    outcome: SlotOutcome,
    note: str | None,
    by: str,
) -> uuid.UUID | None:
    """The slot's row, unless another scheduler recorded it first (then ``None``).

    The unique (schedule_id, slot_at) decides: on PostgreSQL a racing insert waits for
    the first one's transaction, then does nothing; on SQLite writers take turns.
    """
    slot_id = uuid.uuid4()
    statement = (
        _insert(session)(ScheduleSlot)
        .values(
            id=slot_id,
            schedule_id=schedule_id,
            slot_at=slot_at,
            outcome=outcome,
            note=note,
            recorded_by=by,
        )
        .on_conflict_do_nothing(index_elements=["schedule_id", "slot_at"])
        .returning(ScheduleSlot.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def set_slot(session: AsyncSession, slot_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(ScheduleSlot).where(ScheduleSlot.id == slot_id).values(**values))


async def claim_prune(session: AsyncSession, slot_id: uuid.UUID, run_id: uuid.UUID) -> bool:
    """Note the slot's prune run, unless one is noted already (another scheduler)."""
    statement = (
        update(ScheduleSlot)
        .where(ScheduleSlot.id == slot_id, ScheduleSlot.prune_run_id.is_(None))
        .values(prune_run_id=run_id)
        .returning(ScheduleSlot.id)
    )
    return (await session.execute(statement)).first() is not None


async def to_prune(session: AsyncSession, since: datetime) -> list[tuple[Schedule, uuid.UUID]]:
    """Slots since ``since`` whose backup run succeeded and whose schedule keeps a
    retention, with no prune run yet: (schedule, slot id)."""
    query = (
        select(Schedule, ScheduleSlot.id)
        .join(ScheduleSlot, ScheduleSlot.schedule_id == Schedule.id)
        .join(Run, Run.id == ScheduleSlot.run_id)
        .where(
            ScheduleSlot.outcome == SlotOutcome.fired,
            ScheduleSlot.prune_run_id.is_(None),
            ScheduleSlot.slot_at >= since,
            Run.status == RunStatus.succeeded,
            (Schedule.keep_last.is_not(None)) | (Schedule.keep_days.is_not(None)),
        )
    )
    return [(schedule, slot_id) for schedule, slot_id in await session.execute(query)]


async def slots_page(
    session: AsyncSession,
    schedule_id: uuid.UUID,
    *,
    outcome: SlotOutcome | None = None,
    limit: int,
    offset: int,
) -> tuple[list[ScheduleSlot], int]:
    """A schedule's slots, newest first."""
    query = select(ScheduleSlot).where(ScheduleSlot.schedule_id == schedule_id)
    if outcome is not None:
        query = query.where(ScheduleSlot.outcome == outcome)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    ordered = query.order_by(ScheduleSlot.slot_at.desc()).limit(limit).offset(offset)
    return list(await session.scalars(ordered)), total


async def runs_status(session: AsyncSession, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not run_ids:
        return {}
    rows = await session.execute(select(Run.id, Run.status).where(Run.id.in_(run_ids)))
    return {run_id: status for run_id, status in rows}


async def by_fired_run(session: AsyncSession, run_id: uuid.UUID) -> Schedule | None:
    """The schedule whose slot started this run, if one did."""
    query = (
        select(Schedule)
        .join(ScheduleSlot, ScheduleSlot.schedule_id == Schedule.id)
        .where(ScheduleSlot.run_id == run_id)
    )
    return (await session.execute(query)).scalars().first()
