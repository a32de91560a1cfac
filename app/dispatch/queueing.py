"""Which queued run goes next: one run at a time per entity, oldest first."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.run import repository as runs


async def next_runs(session: AsyncSession, entity_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """For each entity with nothing running, its oldest queued run."""
    return await runs.first_queued(session, list(entity_ids))


async def stale_queued(
    session: AsyncSession, before: datetime, limit: int = 200
) -> list[uuid.UUID]:
    """Queued runs first in line for an idle entity, queued before ``before``."""
    return await next_runs(session, await runs.queued_before(session, before, limit))
