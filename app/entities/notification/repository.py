"""Every query on notification targets, their deliveries and the notifiers' cursor."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.entity.models import Entity
from app.entities.notification.models import (
    DeliveryState,
    NotificationDelivery,
    NotificationTarget,
    NotifierCursor,
)
from app.entities.run.models import Run
from app.entities.run.states import FINAL
from app.entities.team.models import Team
from app.errors import NotFound

CURSOR = "runs"

# Targets.


async def targets_page(
    session: AsyncSession,
    teams: Collection[uuid.UUID] | None,
    team_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[NotificationTarget], int]:
    """A page of targets by name; ``teams`` limits them to those teams (None: all)."""
    query = select(NotificationTarget)
    if teams is not None:
        query = query.where(NotificationTarget.team_id.in_(teams))
    if team_id is not None:
        query = query.where(NotificationTarget.team_id == team_id)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.scalars(
        query.order_by(NotificationTarget.name, NotificationTarget.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def get_target(session: AsyncSession, target_id: uuid.UUID) -> NotificationTarget:
    target = await session.get(NotificationTarget, target_id)
    if target is None:
        raise NotFound(f"no notification target with id {target_id}")
    return target


async def add_target(session: AsyncSession, target: NotificationTarget) -> NotificationTarget:
    session.add(target)
    await session.flush()
    return target


async def remove_target(session: AsyncSession, target_id: uuid.UUID) -> None:
    await session.execute(delete(NotificationTarget).where(NotificationTarget.id == target_id))


async def enabled_targets(session: AsyncSession) -> list[NotificationTarget]:
    """Every enabled target (a few per team at most): what the notifiers match runs to."""
    query = select(NotificationTarget).where(NotificationTarget.enabled.is_(True))
    return list(await session.scalars(query))


# Ended runs, as the notifiers read them.


class EndedRun(NamedTuple):
    id: uuid.UUID
    status: str
    operation_type: str
    exit_code: int | None
    error: str | None
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime
    entity_id: uuid.UUID
    entity_kind: str
    entity_name: str
    team_id: uuid.UUID
    team_name: str


async def ended_runs(
    session: AsyncSession,
    after: tuple[datetime, uuid.UUID],
    limit: int,
    teams: Collection[uuid.UUID],
) -> list[EndedRun]:
    """Runs of ``teams`` that ended after ``after`` (finished_at, id), in that order."""
    since, last_id = after
    query = (
        select(
            Run.id,
            Run.status,
            Run.operation_type,
            Run.exit_code,
            Run.error,
            Run.requested_by,
            Run.created_at,
            Run.started_at,
            Run.finished_at,
            Entity.id,
            Entity.kind,
            Entity.name,
            Team.id,
            Team.name,
        )
        .join(Entity, Entity.id == Run.entity_id)
        .join(Team, Team.id == Entity.team_id)
        .where(
            Run.finished_at.is_not(None),
            or_(Run.finished_at > since, (Run.finished_at == since) & (Run.id > last_id)),
            Run.status.in_(FINAL),
            Entity.team_id.in_(teams),
        )
        .order_by(Run.finished_at, Run.id)
        .limit(limit)
    )
    return [EndedRun._make(row) for row in await session.execute(query)]


async def cursor(session: AsyncSession) -> datetime | None:
    """Where the notifiers have read up to; ``None`` before the first one started."""
    found: datetime | None = await session.scalar(
        select(NotifierCursor.finished_at).where(NotifierCursor.name == CURSOR)
    )
    return found


async def start_cursor(session: AsyncSession, at: datetime) -> None:
    """The first notifier starts at ``at``: no notice for runs that ended before."""
    statement = _insert(session, NotifierCursor).values(name=CURSOR, finished_at=at)
    await session.execute(statement.on_conflict_do_nothing(index_elements=["name"]))


async def advance_cursor(session: AsyncSession, to: datetime) -> None:
    """Forward only: another relay may have gone further."""
    await session.execute(
        update(NotifierCursor)
        .where(NotifierCursor.name == CURSOR, NotifierCursor.finished_at < to)
        .values(finished_at=to)
    )


# Deliveries.


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """One row per (target, run, event); those that exist already are left alone. How
    many were new."""
    if not rows:
        return 0
    statement = _insert(session, NotificationDelivery).values(list(rows))
    statement = statement.on_conflict_do_nothing(
        index_elements=["target_id", "run_id", "event"]
    ).returning(NotificationDelivery.id)
    return len((await session.execute(statement)).all())


async def add_delivery(session: AsyncSession, delivery: NotificationDelivery) -> None:
    session.add(delivery)
    await session.flush()


def _due(now: datetime) -> Any:
    free = or_(
        NotificationDelivery.claimed_until.is_(None), NotificationDelivery.claimed_until < now
    )
    return (
        (NotificationDelivery.state == DeliveryState.pending)
        & (NotificationDelivery.next_attempt_at <= now)
        & free
    )


async def due(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Deliveries due now that no relay holds, soonest first (a read: then ``claim``)."""
    query = (
        select(NotificationDelivery.id)
        .where(_due(now))
        .order_by(NotificationDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def claim(
    session: AsyncSession, ids: Collection[uuid.UUID], now: datetime, until: datetime
) -> list[tuple[NotificationDelivery, NotificationTarget]]:
    """Take those of ``ids`` still due and free, held until ``until``: the UPDATE checks
    each row again, so two relays never take the same one."""
    taken = await session.scalars(
        update(NotificationDelivery)
        .where(NotificationDelivery.id.in_(ids), _due(now))
        .values(claimed_until=until)
        .returning(NotificationDelivery.id)
    )
    return await with_targets(session, list(taken))


async def known_pairs(
    session: AsyncSession, run_ids: Collection[uuid.UUID]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """(target, run) pairs that have their delivery row already."""
    if not run_ids:
        return set()
    rows = await session.execute(
        select(NotificationDelivery.target_id, NotificationDelivery.run_id).where(
            NotificationDelivery.run_id.in_(run_ids)
        )
    )
    return {(target_id, run_id) for target_id, run_id in rows if run_id is not None}


async def with_targets(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> list[tuple[NotificationDelivery, NotificationTarget]]:
    if not ids:
        return []
    rows = await session.execute(
        select(NotificationDelivery, NotificationTarget)
        .join(NotificationTarget, NotificationTarget.id == NotificationDelivery.target_id)
        .where(NotificationDelivery.id.in_(ids))
        .execution_options(populate_existing=True)
    )
    return [(delivery, target) for delivery, target in rows.tuples()]


async def record_attempt(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    attempt: dict[str, Any],
    state: DeliveryState,
    next_attempt_at: datetime | None,
    at: datetime,
) -> None:
    """One attempt's outcome (made ``at``); ``state`` pending: tried again at
    ``next_attempt_at``; fenced on pending, so an outcome is recorded once."""
    current = await session.scalar(
        select(NotificationDelivery.tries).where(NotificationDelivery.id == delivery_id)
    )
    ended = state != DeliveryState.pending
    await session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == delivery_id, NotificationDelivery.state == "pending")
        .values(
            attempts=NotificationDelivery.attempts + 1,
            tries=[*(current or []), attempt],
            state=state,
            next_attempt_at=next_attempt_at,
            claimed_until=None,
            finished_at=at if ended else None,
        )
    )  # fmt: skip


async def deliveries_page(
    session: AsyncSession, target_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[NotificationDelivery], int]:
    """A target's deliveries, newest first."""
    query = select(NotificationDelivery).where(NotificationDelivery.target_id == target_id)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.scalars(
        query.order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id)
        .limit(limit).offset(offset)
    )  # fmt: skip
    return list(rows), total


async def delivery(session: AsyncSession, delivery_id: uuid.UUID) -> NotificationDelivery:
    found = await session.get(NotificationDelivery, delivery_id, populate_existing=True)
    if found is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    return found
