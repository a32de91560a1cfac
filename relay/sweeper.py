"""Settle runs whose worker is gone, and enqueue runs that Redis never got.

Before a run whose worker is gone is settled (lost, cancelled, or queued again), every
process its attempt started on this machine is stopped (``executors.processes``): no
process of a dead worker's run survives its settling, and a new attempt never starts
beside an old one. Then the attempt's log is closed with a line saying what happened,
sent through the events stream after the attempt's own lines.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.registry import Catalog
from app.config import Settings
from app.db import session_scope, utcnow
from app.dispatch.queueing import next_runs, stale_queued
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import RunStatus
from app.events import LostEvent, status_messages
from executors import processes

logger = logging.getLogger(__name__)

# How often runs settled earlier are looked at again for a log that does not yet say
# so (the relay restarted, or Redis was away when their line was sent).
RESCAN_LOST = 30.0


@dataclass
class Swept:
    messages: list[tuple[str, str]] = field(default_factory=list)
    # Runs to enqueue; ``release`` ones had a worker die holding their arq job.
    enqueue: list[uuid.UUID] = field(default_factory=list)
    release: list[uuid.UUID] = field(default_factory=list)
    # The lines that end lost attempts' logs, for the events stream.
    lost: list[LostEvent] = field(default_factory=list)


@dataclass
class Sweeper:
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: Catalog
    settings: Settings
    host: str = field(default_factory=socket.gethostname)
    rescanned: float = 0.0

    async def sweep(self) -> Swept:
        swept = Swept()
        async with session_scope(self.sessionmaker, writes=False) as session:
            expired = await runs.expired_leases(session, utcnow())
        # Outside any transaction: stopping processes may take seconds.
        stopped = {run.id: await asyncio.to_thread(self._stop_processes, run) for run in expired}
        async with session_scope(self.sessionmaker) as session:
            freed: set[uuid.UUID] = set()
            for run in expired:
                said = stopped[run.id]
                settled = said is not None and await self._settle(session, run, said, swept)
                if settled and run.id not in swept.release:
                    # Ended: the entity's next run may start. One queued again waits for
                    # the relay to close its lost attempt's log, and is enqueued then.
                    freed.add(run.entity_id)
            swept.enqueue.extend(await next_runs(session, freed))
            now = utcnow()
            swept.enqueue.extend(await stale_queued(session, now - self.settings.requeue_after))
            if time.monotonic() - self.rescanned > RESCAN_LOST:
                self.rescanned = time.monotonic()
                sent = {event["run"] for event in swept.lost}
                unlogged = await runs.lost_unlogged(session)
                swept.lost.extend(lost_line(run) for run in unlogged if str(run.id) not in sent)
        return swept

    def _stop_processes(self, run: Run) -> str | None:
        """What became of the attempt's processes; ``None``: some are still alive, so the
        run is not settled yet (tried again next sweep)."""
        host = (run.worker or "").rpartition(":")[0]
        if host and host != self.host:
            return (
                f"its worker ran on {host}, which this sweeper (on {self.host}) cannot reach; "
                "processes there were not checked"
            )
        assert self.settings.work_dir is not None
        records = processes.records_of_run(self.settings.work_dir, str(run.id))
        result = processes.stop_recorded(records)
        if result.left:
            logger.warning("run %s: %s; settling it later", run.id, result.describe())
            return None
        return result.describe()

    async def _settle(self, session: AsyncSession, run: Run, processes: str, swept: Swept) -> bool:
        """Lost, cancelled, or queued again; ``False`` if its worker renewed it meanwhile.

        Settled either way, the entity is free for its next run (which may be this one,
        once the relay has closed this attempt's log).
        """
        unsafe = [t for t in await runs.task_types(session, run.id) if not self._safe(t)]
        run_id, entity_id = run.id, run.entity_id
        settled = await runs.settle(session, run, unsafe, self.settings.run_max_attempts, processes)
        if settled is None:
            return False
        status, lost = settled
        logger.warning("run %s: %s; %s", run_id, lost["why"], processes)
        swept.messages += status_messages(run_id, status, entity_id, error=lost["why"])
        if status == RunStatus.queued:
            swept.release.append(run_id)
        swept.lost.append(lost_line(run, [*run.lost_attempts, lost]))
        return True

    def _safe(self, task_type: str) -> bool:
        task = self.catalog.tasks.get(task_type)
        return task is not None and task.safe_to_rerun


def lost_line(run: Run, history: list[dict[str, Any]] | None = None) -> LostEvent:
    """The event whose line ends the run's last attempt's log."""
    history = run.lost_attempts if history is None else history
    last = history[-1] if history else {}
    at = str(last.get("at") or utcnow().isoformat())
    line = (
        f"attempt {run.attempt} was lost at {at[:19].replace('T', ' ')} UTC "
        f"(worker {last.get('worker') or run.worker or 'unknown'}): "
        f"{last.get('why') or run.error or 'its worker is gone'}. "
        f"Its processes: {last.get('processes') or 'unknown'}."
    )
    return LostEvent(t="lost", run=str(run.id), attempt=run.attempt, line=line, at=time.time())
