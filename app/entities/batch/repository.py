"""Every query on batches and their items, and the fenced moves of items.

An item moves only through a conditional UPDATE (``WHERE status = <from>``), so that
of two drivers racing for the same item one wins and the other sees ``False``. A
driver's tick holds the batch's row first (``hold``), so the running count it reads
stays true until it commits: no two drivers both start "the last free slot".
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from app.db import utcnow
from app.entities.batch.models import Batch, BatchItem, BatchStatus, ItemStatus
from app.entities.entity.models import Entity, EntityReference
from app.entities.operation.models import Operation, OperationTask
from app.entities.run.models import Run
from app.errors import NotFound

# Reads.


async def get(session: AsyncSession, batch_id: uuid.UUID) -> Batch:
    """The batch with its items, in order."""
    query = select(Batch).where(Batch.id == batch_id).options(selectinload(Batch.items))
    batch = (await session.execute(query)).scalar_one_or_none()
    if batch is None:
        raise NotFound(f"no batch with id {batch_id}")
    return batch


async def page(
    session: AsyncSession,
    teams: Collection[uuid.UUID] | None,
    team_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Batch], int]:
    """Newest first; ``teams``: those the asker may see (None: all)."""
    query = select(Batch)
    if teams is not None:
        query = query.where(Batch.team_id.in_(teams))
    if team_id is not None:
        query = query.where(Batch.team_id == team_id)
    if status is not None:
        query = query.where(Batch.status == status)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.order_by(Batch.created_at.desc(), Batch.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total


async def counts(session: AsyncSession, batch_id: uuid.UUID) -> dict[str, int]:
    """How many items are in each status."""
    query = (
        select(BatchItem.status, func.count())
        .where(BatchItem.batch_id == batch_id)
        .group_by(BatchItem.status)
    )
    return {status: n for status, n in await session.execute(query)}


async def unfinished(session: AsyncSession) -> list[uuid.UUID]:
    """Batches a driver still has work on (a cancelled one may have items to follow)."""
    query = select(Batch.id).where(Batch.finished_at.is_(None)).order_by(Batch.created_at)
    return list((await session.execute(query)).scalars())


async def by_parent_run(session: AsyncSession, run_id: uuid.UUID) -> Batch | None:
    """The batch a run (a platform upgrade) started, if any."""
    query = select(Batch).where(Batch.parent_run_id == run_id).options(selectinload(Batch.items))
    return (await session.execute(query)).scalar_one_or_none()


# Selection.


async def entities_in_team(
    session: AsyncSession, kind: str, ids: Sequence[uuid.UUID], team_id: uuid.UUID
) -> dict[uuid.UUID, Entity]:
    """Those of ``ids`` that are entities of ``kind`` in the team."""
    query = select(Entity).where(Entity.id.in_(ids), Entity.kind == kind, Entity.team_id == team_id)
    return {entity.id: entity for entity in (await session.execute(query)).scalars()}


async def referencing(
    session: AsyncSession,
    kind: str,
    role: str,
    target_id: uuid.UUID,
    team_id: uuid.UUID,
    state: str | None,
) -> list[Entity]:
    """Entities of ``kind`` whose ``role`` reference is ``target_id`` ("every site of
    platform P"), in the team, optionally in one state; by name."""
    query = (
        select(Entity)
        .join(EntityReference, EntityReference.source_id == Entity.id)
        .where(
            Entity.kind == kind,
            Entity.team_id == team_id,
            EntityReference.role == role,
            EntityReference.target_id == target_id,
        )
        .order_by(Entity.name)
    )
    if state is not None:
        query = query.where(Entity.state == state)
    return list((await session.execute(query)).scalars())


async def operation_of(session: AsyncSession, entity_id: uuid.UUID, name: str) -> Operation:
    """The entity's operation ``name``, loaded as a run request needs it."""
    query = (
        select(Operation)
        .where(Operation.entity_id == entity_id, Operation.type == name)
        .options(
            selectinload(Operation.steps).joinedload(OperationTask.task, innerjoin=True),
            joinedload(Operation.entity, innerjoin=True)
            .selectinload(Entity.references)
            .selectinload(EntityReference.target),
        )
    )
    operation = (await session.execute(query)).scalar_one_or_none()
    if operation is None:
        raise NotFound(f"the entity has no operation {name}")
    return operation


async def operations_of(
    session: AsyncSession, entity_ids: Sequence[uuid.UUID], name: str
) -> list[Operation]:
    """Operation ``name`` of each entity, loaded as a run request needs it."""
    query = (
        select(Operation)
        .where(Operation.entity_id.in_(entity_ids), Operation.type == name)
        .options(
            selectinload(Operation.steps).joinedload(OperationTask.task, innerjoin=True),
            joinedload(Operation.entity, innerjoin=True)
            .selectinload(Entity.references)
            .selectinload(EntityReference.target),
        )
    )
    return list((await session.execute(query)).unique().scalars())


# Writes and moves.


async def add(session: AsyncSession, batch: Batch) -> Batch:
    session.add(batch)
    await session.flush()
    return batch


async def hold(session: AsyncSession, batch_id: uuid.UUID) -> Batch | None:
    """Lock the unfinished batch's row for this transaction (PostgreSQL: FOR UPDATE; on
    SQLite the writing transaction already holds the one write lock); ``None`` if it has
    finished meanwhile."""
    query = select(Batch).where(Batch.id == batch_id, Batch.finished_at.is_(None))
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def items_in(
    session: AsyncSession, batch_id: uuid.UUID, statuses: Collection[str], limit: int | None = None
) -> list[BatchItem]:
    query = (
        select(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.status.in_(statuses))
        .order_by(BatchItem.position)
    )
    if limit is not None:
        query = query.limit(limit)
    return list((await session.execute(query)).scalars())


async def move_item(
    session: AsyncSession,
    item_id: uuid.UUID,
    source: str,
    to: str,
    **values: Any,
) -> bool:
    """Move the item from ``source`` to ``to``; ``False`` if it was not in ``source``."""
    now = utcnow()
    if to == ItemStatus.running:
        values.setdefault("started_at", now)
    elif to != ItemStatus.pending:
        values.setdefault("finished_at", now)
    statement = (
        update(BatchItem)
        .where(BatchItem.id == item_id, BatchItem.status == source)
        .values(status=to, **values)
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def end_pending(
    session: AsyncSession, batch_id: uuid.UUID, to: str, reason: str | None
) -> int:
    """Every pending item of the batch to ``to`` (cancelled, or skipped with a reason)."""
    statement = (
        update(BatchItem)
        .where(BatchItem.batch_id == batch_id, BatchItem.status == ItemStatus.pending)
        .values(status=to, reason=reason, finished_at=utcnow())
    )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0))


async def ended_runs(
    session: AsyncSession, batch_id: uuid.UUID, final: Collection[str]
) -> list[tuple[uuid.UUID, str, str | None, int | None, datetime | None]]:
    """Running items whose run has ended: (item id, run status, error, exit code, end)."""
    query = (
        select(BatchItem.id, Run.status, Run.error, Run.exit_code, Run.finished_at)
        .join(Run, Run.id == BatchItem.run_id)
        .where(
            BatchItem.batch_id == batch_id,
            BatchItem.status == ItemStatus.running,
            Run.status.in_(final),
        )
    )
    return [tuple(row) for row in await session.execute(query)]  # type: ignore[misc]


async def set_status(
    session: AsyncSession, batch_id: uuid.UUID, status: BatchStatus, only_from: str
) -> bool:
    """Change a batch's status if it is still ``only_from``."""
    statement = (
        update(Batch).where(Batch.id == batch_id, Batch.status == only_from).values(status=status)
    )
    return bool(getattr(await session.execute(statement), "rowcount", 0))


async def finish(
    session: AsyncSession,
    batch_id: uuid.UUID,
    status: str,
    summary: dict[str, Any],
    text: str,
) -> bool:
    """Close the batch (once: fenced on ``finished_at`` still empty)."""
    statement = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.finished_at.is_(None))
        .values(status=status, summary=summary, summary_text=text, finished_at=utcnow())
    )
    return bool(getattr(await session.execute(statement), "rowcount", 0))
