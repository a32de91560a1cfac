"""Which queued run goes next: one run at a time per entity, oldest first."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.run.models import Run, RunStatus

ACTIVE = (RunStatus.running, RunStatus.cancelling)


async def next_runs(session: AsyncSession, entity_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """For each entity with nothing running, its oldest queued run."""
    ids = list(entity_ids)
    if not ids:
        return []
    busy = set(
        await session.scalars(
            select(Run.entity_id).where(Run.entity_id.in_(ids), Run.status.in_(ACTIVE))
        )
    )
    return await _oldest_queued(session, [i for i in ids if i not in busy])


async def stale_queued(
    session: AsyncSession, before: datetime, limit: int = 200
) -> list[uuid.UUID]:
    """Queued runs first in line for an idle entity, queued before ``before``."""
    entity_ids = set(
        await session.scalars(
            select(Run.entity_id)
            .where(Run.status == RunStatus.queued, Run.created_at < before)
            .limit(limit)
        )
    )
    return await next_runs(session, entity_ids)


async def _oldest_queued(session: AsyncSession, entity_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    if not entity_ids:
        return []
    rows = await session.execute(
        select(Run.entity_id, Run.id)
        .where(Run.entity_id.in_(entity_ids), Run.status == RunStatus.queued)
        .order_by(Run.created_at, Run.id)
    )
    first: dict[uuid.UUID, uuid.UUID] = {}
    for entity_id, run_id in rows:
        first.setdefault(entity_id, run_id)
    return list(first.values())
