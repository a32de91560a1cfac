"""Settle runs whose worker is gone, and enqueue runs that Redis never got."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.config import Settings
from app.db import utcnow
from app.dispatch.queueing import next_runs, stale_queued
from app.entities.run.models import Run, RunStatus, RunTask, TaskStatus
from app.events import status_messages

logger = logging.getLogger(__name__)
ACTIVE = (RunStatus.running, RunStatus.cancelling)


@dataclass
class Swept:
    messages: list[tuple[str, str]] = field(default_factory=list)
    # Runs to enqueue; ``release`` ones had a worker die holding their arq job.
    enqueue: list[uuid.UUID] = field(default_factory=list)
    release: list[uuid.UUID] = field(default_factory=list)


async def sweep(session: AsyncSession, catalog: Catalog, settings: Settings) -> Swept:
    swept = Swept()
    now = utcnow()
    expired = await session.scalars(
        select(Run).where(Run.status.in_(ACTIVE), Run.lease_expires_at < now)
    )
    freed: set[uuid.UUID] = set()
    for run in list(expired):
        if await _settle(session, catalog, run, swept):
            freed.add(run.entity_id)
    swept.enqueue.extend(await next_runs(session, freed))
    swept.enqueue.extend(await stale_queued(session, now - settings.requeue_after))
    return swept


async def _settle(session: AsyncSession, catalog: Catalog, run: Run, swept: Swept) -> bool:
    """Lost, cancelled, or queued again; ``False`` if its worker renewed it meanwhile.

    Settled either way, the entity is free for its next run (which may be this one).
    """
    task_types = list(
        await session.scalars(select(RunTask.task_type).where(RunTask.run_id == run.id))
    )
    unsafe = [name for name in task_types if not _safe(catalog, name)]
    if run.status == RunStatus.cancelling:
        status, error = (
            RunStatus.cancelled,
            "cancelled; its worker was gone, so the lease settled it",
        )
    elif unsafe:
        status = RunStatus.lost
        error = (
            f"its worker stopped renewing the lease during attempt {run.attempt}; "
            f"not run again, as {', '.join(sorted(set(unsafe)))} is not safe to re-run"
        )
    else:
        status = RunStatus.queued
        error = f"its worker was lost during attempt {run.attempt}; running it again"
    final = status != RunStatus.queued
    result = await session.execute(
        update(Run)
        .where(Run.id == run.id, Run.attempt == run.attempt, Run.lease_expires_at < utcnow())
        .values(
            status=status,
            error=error,
            lease_expires_at=None,
            finished_at=utcnow() if final else None,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    await _close_tasks(session, run.id, final)
    logger.warning("run %s: %s", run.id, error)
    swept.messages += status_messages(run.id, status, run.entity_id, error=error)
    if not final:
        swept.release.append(run.id)
    return True


async def _close_tasks(session: AsyncSession, run_id: uuid.UUID, final: bool) -> None:
    unfinished = (TaskStatus.pending, TaskStatus.running)
    await session.execute(
        update(RunTask)
        .where(RunTask.run_id == run_id, RunTask.status.in_(unfinished))
        .values(status=TaskStatus.skipped if final else TaskStatus.pending)
    )


def _safe(catalog: Catalog, task_type: str) -> bool:
    task = catalog.tasks.get(task_type)
    return task is not None and task.safe_to_rerun
