"""Settle runs whose worker is gone, and enqueue runs that Redis never got."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.config import Settings
from app.db import utcnow
from app.dispatch.queueing import next_runs, stale_queued
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import RunStatus
from app.events import status_messages

logger = logging.getLogger(__name__)


@dataclass
class Swept:
    messages: list[tuple[str, str]] = field(default_factory=list)
    # Runs to enqueue; ``release`` ones had a worker die holding their arq job.
    enqueue: list[uuid.UUID] = field(default_factory=list)
    release: list[uuid.UUID] = field(default_factory=list)


async def sweep(session: AsyncSession, catalog: Catalog, settings: Settings) -> Swept:
    swept = Swept()
    now = utcnow()
    freed: set[uuid.UUID] = set()
    for run in await runs.expired_leases(session, now):
        if await _settle(session, catalog, run, swept):
            freed.add(run.entity_id)
    swept.enqueue.extend(await next_runs(session, freed))
    swept.enqueue.extend(await stale_queued(session, now - settings.requeue_after))
    return swept


async def _settle(session: AsyncSession, catalog: Catalog, run: Run, swept: Swept) -> bool:
    """Lost, cancelled, or queued again; ``False`` if its worker renewed it meanwhile.

    Settled either way, the entity is free for its next run (which may be this one).
    """
    unsafe = [name for name in await runs.task_types(session, run.id) if not _safe(catalog, name)]
    run_id, entity_id = run.id, run.entity_id
    settled = await runs.settle(session, run, unsafe)
    if settled is None:
        return False
    status, why = settled
    logger.warning("run %s: %s", run_id, why)
    swept.messages += status_messages(run_id, status, entity_id, error=why)
    if status == RunStatus.queued:
        swept.release.append(run_id)
    return True


def _safe(catalog: Catalog, task_type: str) -> bool:
    task = catalog.tasks.get(task_type)
    return task is not None and task.safe_to_rerun
