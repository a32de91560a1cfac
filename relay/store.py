"""Apply a batch of run events to the database, idempotently, in one transaction."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import check_output
from app.dispatch.effects import apply_on_success
from app.entities.run.models import FINAL_STATUSES, Run, RunLogLine, RunStatus, RunTask, TaskStatus
from app.entities.task.models import TaskInstance
from app.events import (
    Event,
    ExitEvent,
    LogEvent,
    OutputEvent,
    TaskEvent,
    run_channel,
    status_messages,
)

logger = logging.getLogger(__name__)

INSERT_CHUNK = 1000
ACTIVE = (RunStatus.running, RunStatus.cancelling)


@dataclass
class Applied:
    """What to do once the batch is committed: publish, and runs whose entity is free."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    finished_entities: set[uuid.UUID] = field(default_factory=set)
    refused: int = 0


@dataclass
class _RunRow:
    id: uuid.UUID
    attempt: int
    status: str
    entity_id: uuid.UUID


async def apply(session: AsyncSession, catalog: Catalog, events: Sequence[Event]) -> Applied:
    applied = Applied()
    runs = await _lock_runs(session, {e["run"] for e in events})
    current: list[Event] = []
    for event in events:
        run = runs.get(event["run"])
        if run is None or event["attempt"] != run.attempt:
            applied.refused += 1  # a stale attempt, or a run that no longer exists
            continue
        current.append(event)
    logs = [e for e in current if e["t"] == "log"]
    await _insert_lines(session, logs, applied)
    for event in current:
        if event["t"] == "output":
            await _output(session, catalog, runs[event["run"]], event, applied)
        elif event["t"] == "task":
            await _task(session, event, applied)
        elif event["t"] == "exit":
            await _exit(session, catalog, runs[event["run"]], event, applied)
    await _mark_complete(session, {uuid.UUID(e["run"]) for e in logs} | _exited(current))
    return applied


def _exited(events: Sequence[Event]) -> set[uuid.UUID]:
    return {uuid.UUID(e["run"]) for e in events if e["t"] == "exit"}


async def _lock_runs(session: AsyncSession, run_ids: set[str]) -> dict[str, _RunRow]:
    """A write first, so no claim can change an attempt between our check and our insert."""
    ids = [uuid.UUID(run_id) for run_id in run_ids]
    await session.execute(update(Run).where(Run.id.in_(ids)).values(attempt=Run.attempt))
    rows = await session.execute(
        select(Run.id, Run.attempt, Run.status, Run.entity_id).where(Run.id.in_(ids))
    )
    return {str(row.id): _RunRow(row.id, row.attempt, row.status, row.entity_id) for row in rows}


async def _insert_lines(session: AsyncSession, logs: list[LogEvent], applied: Applied) -> None:
    rows = [
        {
            "run_id": uuid.UUID(event["run"]),
            "seq": seq,
            "stream": stream,
            "line": line,
            "at": datetime.fromtimestamp(at, UTC),
        }
        for event in logs
        for seq, stream, line, at in event["lines"]
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = insert(RunLogLine).on_conflict_do_nothing(index_elements=["run_id", "seq"])
        await session.execute(statement, rows[start : start + INSERT_CHUNK])
    for event in logs:
        body = {"type": "log", "lines": event["lines"]}
        applied.messages.append((run_channel(event["run"]), json.dumps(body)))


async def _output(
    session: AsyncSession, catalog: Catalog, run: _RunRow, event: OutputEvent, applied: Applied
) -> None:
    task = await session.scalar(
        select(TaskInstance).where(
            TaskInstance.entity_id == run.entity_id, TaskInstance.key == event["task"]
        )
    )
    task_type = catalog.tasks.get(task.type) if task is not None else None
    if task is None or task_type is None:
        logger.warning("run %s: output for unknown task %s", run.id, event["task"])
        return
    try:
        # The worker checked it already; a relay never trusts what a stream holds.
        value = check_output(task_type.outputs, event["name"], event["value"])
    except ValueError as error:
        logger.warning("run %s: refused output: %s", run.id, error)
        return
    task.outputs = {**task.outputs, event["name"]: value}
    body = {"type": "output", "task": event["task"], "name": event["name"], "value": value}
    applied.messages.append((run_channel(event["run"]), json.dumps(body)))


async def _task(session: AsyncSession, event: TaskEvent, applied: Applied) -> None:
    at = datetime.fromtimestamp(event["at"], UTC)
    values: dict[str, Any] = {"status": event["status"]}
    if event["status"] == TaskStatus.running:
        values["started_at"] = at
    else:
        values["finished_at"] = at
    await session.execute(
        update(RunTask)
        .where(RunTask.run_id == uuid.UUID(event["run"]), RunTask.position == event["position"])
        .values(**values)
    )
    body = {"type": "task", "position": event["position"], "status": event["status"]}
    applied.messages.append((run_channel(event["run"]), json.dumps(body)))


async def _exit(
    session: AsyncSession, catalog: Catalog, run: _RunRow, event: ExitEvent, applied: Applied
) -> None:
    if run.status not in ACTIVE or event["status"] not in FINAL_STATUSES:
        return
    recorded = await session.scalar(
        update(Run)
        .where(Run.id == run.id, Run.attempt == event["attempt"], Run.status.in_(ACTIVE))
        .values(
            status=event["status"],
            exit_code=event["code"],
            finished_at=datetime.fromtimestamp(event["at"], UTC),
            log_emitted=event["last_seq"],
            lease_expires_at=None,
        )
        .returning(Run.id)
    )
    if recorded is None:
        return
    if event["status"] == RunStatus.succeeded:
        await apply_on_success(session, catalog, run.id)
    applied.messages += status_messages(
        run.id, event["status"], run.entity_id, exit_code=event["code"]
    )
    applied.finished_entities.add(run.entity_id)


async def _mark_complete(session: AsyncSession, run_ids: set[uuid.UUID]) -> None:
    """Complete once every line 1..last the worker emitted is stored (none missing)."""
    if not run_ids:
        return
    rows = await session.execute(
        select(Run.id, Run.log_emitted).where(
            Run.id.in_(run_ids), Run.log_emitted.is_not(None), Run.log_complete.is_(False)
        )
    )
    for run_id, emitted in rows:
        stored = await session.scalar(
            select(func.count())
            .select_from(RunLogLine)
            .where(RunLogLine.run_id == run_id, RunLogLine.seq <= emitted)
        )
        if stored == emitted:
            await session.execute(update(Run).where(Run.id == run_id).values(log_complete=True))
