"""Every query on runs and their log lines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from app.entities.entity.models import Entity
from app.entities.run.models import Run, RunLogLine
from app.errors import NotFound


async def get(session: AsyncSession, run_id: uuid.UUID) -> Run:
    query = select(Run).where(Run.id == run_id).options(selectinload(Run.tasks))
    run = (await session.execute(query)).scalar_one_or_none()
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


async def team_of(session: AsyncSession, run: Run) -> uuid.UUID:
    team_id = await session.scalar(select(Entity.team_id).where(Entity.id == run.entity_id))
    if team_id is None:
        raise NotFound(f"no run with id {run.id}")
    return team_id


async def page(
    session: AsyncSession,
    *,
    entity_id: uuid.UUID | None,
    operation_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    offset: int,
    teams: set[uuid.UUID] | None,
) -> tuple[list[Run], int]:
    query = select(Run)
    if teams is not None:
        query = query.join(Entity, Entity.id == Run.entity_id).where(Entity.team_id.in_(teams))
    if entity_id is not None:
        query = query.where(Run.entity_id == entity_id)
    if operation_id is not None:
        query = query.where(Run.operation_id == operation_id)
    if status is not None:
        query = query.where(Run.status == status)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    query = query.options(selectinload(Run.tasks)).order_by(Run.created_at.desc(), Run.id)
    rows = await session.execute(query.limit(limit).offset(offset))
    return list(rows.scalars()), total


def _latest(
    partition: InstrumentedAttribute[uuid.UUID], where: ColumnElement[bool]
) -> Select[tuple[uuid.UUID]]:
    ranked = select(
        Run.id,
        func.row_number()
        .over(partition_by=partition, order_by=(Run.created_at.desc(), Run.id.desc()))
        .label("rank"),
    ).where(where)
    sub = ranked.subquery()
    return select(sub.c.id).where(sub.c.rank == 1)


async def latest_by_operation(
    session: AsyncSession, operation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Run]:
    if not operation_ids:
        return {}
    ids = _latest(Run.operation_id, Run.operation_id.in_(operation_ids))
    rows = await session.execute(select(Run).where(Run.id.in_(ids)))
    return {run.operation_id: run for run in rows.scalars()}


async def latest_by_entity(
    session: AsyncSession, entity_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Run]:
    if not entity_ids:
        return {}
    ids = _latest(Run.entity_id, Run.entity_id.in_(entity_ids))
    rows = await session.execute(select(Run).where(Run.id.in_(ids)))
    return {run.entity_id: run for run in rows.scalars()}


async def log_after(
    session: AsyncSession, run_id: uuid.UUID, after: int, limit: int
) -> list[RunLogLine]:
    query = (
        select(RunLogLine)
        .where(RunLogLine.run_id == run_id, RunLogLine.seq > after)
        .order_by(RunLogLine.seq)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
