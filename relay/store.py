"""Apply a batch of run events to the database, idempotently, in one transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import check_output
from app.dispatch.effects import apply_on_success
from app.entities.run import repository as runs
from app.entities.run.repository import EventFence
from app.entities.run.states import ACTIVE, ENDINGS, RunStatus
from app.entities.task import repository as task_instances
from app.events import (
    Event,
    ExitEvent,
    LogEvent,
    LostEvent,
    OutputEvent,
    TaskEvent,
    dumps,
    run_channel,
    status_messages,
)

logger = logging.getLogger(__name__)


@dataclass
class Applied:
    """What to do once the batch is committed: publish, and runs whose entity is free."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    finished_entities: set[uuid.UUID] = field(default_factory=set)
    refused: int = 0
    # Task events of the batch, in order: (run, position, status, when).
    tasks: list[tuple[uuid.UUID, int, str, datetime]] = field(default_factory=list)


async def apply(session: AsyncSession, catalog: Catalog, events: Sequence[Event]) -> Applied:
    applied = Applied()
    fences = await runs.lock_for_events(session, {uuid.UUID(e["run"]) for e in events})
    current: list[Event] = []
    for event in events:
        fence = fences.get(uuid.UUID(event["run"]))
        if fence is None or event["attempt"] != fence.attempt:
            applied.refused += 1  # a stale attempt, or a run that no longer exists
            continue
        current.append(event)
    logs = [e for e in current if e["t"] == "log"]
    await _insert_lines(session, logs, applied)
    for event in current:
        if event["t"] == "output":
            await _output(session, catalog, fences[uuid.UUID(event["run"])], event, applied)
        elif event["t"] == "task":
            _task(event, applied)
        elif event["t"] == "exit":
            await _exit(session, catalog, fences[uuid.UUID(event["run"])], event, applied)
        elif event["t"] == "lost":
            await _lost(session, event, applied)
    await runs.record_tasks(session, applied.tasks)
    touched = {uuid.UUID(e["run"]) for e in logs} | _ended(current)
    for run_id in await runs.mark_log_complete(session, touched):
        fence = fences[run_id]
        if fence.status == RunStatus.queued:
            # An attempt lost or handed back: its log is whole, the next may start.
            applied.finished_entities.add(fence.entity_id)
    return applied


def _ended(events: Sequence[Event]) -> set[uuid.UUID]:
    """Runs whose attempt said it ended (exit), or was said to be lost."""
    return {uuid.UUID(e["run"]) for e in events if e["t"] in ("exit", "lost")}


async def _insert_lines(session: AsyncSession, logs: list[LogEvent], applied: Applied) -> None:
    by_run: dict[str, list[runs.LogLine]] = {}
    for event in logs:
        by_run.setdefault(event["run"], []).extend(event["lines"])
    for run_id, lines in by_run.items():
        await runs.insert_lines(session, uuid.UUID(run_id), lines)
    for event in logs:
        body = {"type": "log", "lines": event["lines"]}
        applied.messages.append((run_channel(event["run"]), dumps(body)))


async def _output(
    session: AsyncSession,
    catalog: Catalog,
    fence: EventFence,
    event: OutputEvent,
    applied: Applied,
) -> None:
    task = await task_instances.by_key(session, fence.entity_id, event["task"])
    task_type = catalog.tasks.get(task.type) if task is not None else None
    if task is None or task_type is None:
        logger.warning("run %s: output for unknown task %s", event["run"], event["task"])
        return
    try:
        # The worker checked it already; a relay never trusts what a stream holds.
        value = check_output(task_type.outputs, event["name"], event["value"])
    except ValueError as error:
        logger.warning("run %s: refused output: %s", event["run"], error)
        return
    task.outputs = {**task.outputs, event["name"]: value}
    body = {"type": "output", "task": event["task"], "name": event["name"], "value": value}
    applied.messages.append((run_channel(event["run"]), dumps(body)))


def _task(event: TaskEvent, applied: Applied) -> None:
    """Stored with the batch's other task events, in one go (``runs.record_tasks``)."""
    at = datetime.fromtimestamp(event["at"], UTC)
    applied.tasks.append((uuid.UUID(event["run"]), event["position"], event["status"], at))
    body = {"type": "task", "position": event["position"], "status": event["status"]}
    applied.messages.append((run_channel(event["run"]), dumps(body)))


async def _lost(session: AsyncSession, event: LostEvent, applied: Applied) -> None:
    """The line that ends a lost attempt's log, once (the sweeper may send it again)."""
    run_id = uuid.UUID(event["run"])
    at = datetime.fromtimestamp(event["at"], UTC)
    seq = await runs.log_lost_attempt(session, run_id, event["attempt"], event["line"], at)
    if seq is None:
        return
    body = {"type": "log", "lines": [(seq, "system", event["line"], event["at"])]}
    applied.messages.append((run_channel(run_id), dumps(body)))


async def _exit(
    session: AsyncSession,
    catalog: Catalog,
    fence: EventFence,
    event: ExitEvent,
    applied: Applied,
) -> None:
    run_id = uuid.UUID(event["run"])
    if fence.status == event["status"]:
        # Recorded already by its worker, which publishes it after its commit: said once
        # more here, in case the worker died in between (a subscriber must hear the end;
        # hearing it twice is harmless).
        applied.messages += status_messages(
            run_id, fence.status, fence.entity_id, exit_code=event["code"]
        )
        return
    if fence.status not in ACTIVE or event["status"] not in ENDINGS:
        return  # settled by the lease meanwhile, or not an ending
    at = datetime.fromtimestamp(event["at"], UTC)
    entity_id = await runs.finish(
        session, run_id, event["attempt"], event["status"], event["code"], event["last_seq"], at
    )
    if entity_id is None:
        return
    if event["status"] == RunStatus.succeeded:
        await apply_on_success(session, catalog, run_id)
    applied.messages += status_messages(run_id, event["status"], entity_id, exit_code=event["code"])
    applied.finished_entities.add(entity_id)
