"""Every query on runs, their task rows and their log lines; and the fenced moves.

Sections: reads; what goes next (the queue); the moves (every status change goes
through ``_move``, checked against ``states``); task rows; the relay's writes (event
fencing, log lines).
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Update,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased, selectinload

from app.db import utcnow
from app.entities.entity.models import Entity
from app.entities.run import states
from app.entities.run.models import Run, RunLogLine, RunTask
from app.entities.run.states import ACTIVE, Move, RunStatus, TaskStatus
from app.errors import NotFound

INSERT_CHUNK = 10_000


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


async def last_seq(session: AsyncSession, run_id: uuid.UUID) -> int:
    """The highest log line number stored for the run (0: none)."""
    query = select(func.max(RunLogLine.seq)).where(RunLogLine.run_id == run_id)
    return int(await session.scalar(query) or 0)


async def task_types(session: AsyncSession, run_id: uuid.UUID) -> list[str]:
    return list(await session.scalars(select(RunTask.task_type).where(RunTask.run_id == run_id)))


async def expired_leases(session: AsyncSession, now: datetime) -> list[Run]:
    """Active runs whose worker has not renewed the lease in time."""
    query = select(Run).where(Run.status.in_(ACTIVE), Run.lease_expires_at < now)
    return list(await session.scalars(query))


# What goes next: one run at a time per entity, oldest first.


async def first_queued(session: AsyncSession, entity_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Each entity's oldest queued run, for those of the entities with no active run."""
    if not entity_ids:
        return []
    rows = await session.execute(
        select(Run.entity_id, Run.id)
        .where(Run.entity_id.in_(entity_ids), Run.status == RunStatus.queued, ~_busy())
        .order_by(Run.created_at, Run.id)
    )
    first: dict[uuid.UUID, uuid.UUID] = {}
    for entity_id, run_id in rows:
        first.setdefault(entity_id, run_id)
    return list(first.values())


async def queued_before(session: AsyncSession, before: datetime, limit: int) -> set[uuid.UUID]:
    """Entities with a run queued before ``before`` (at most ``limit`` runs looked at)."""
    query = (
        select(Run.entity_id)
        .where(Run.status == RunStatus.queued, Run.created_at < before)
        .limit(limit)
    )
    return set(await session.scalars(query))


# The moves. Each checks itself against ``states`` and is fenced, so that of two
# racing moves one wins and a stale attempt changes nothing.


class Moved(NamedTuple):
    """A run as a move left it."""

    entity_id: uuid.UUID
    attempt: int
    status: str
    operation_type: str


async def _move(
    session: AsyncSession,
    run_id: uuid.UUID,
    move: Move,
    to: RunStatus | None = None,
    *,
    attempt: int | None = None,
    also: Sequence[ColumnElement[bool]] = (),
    values: dict[str, Any],
) -> Moved | None:
    """The one UPDATE that moves a run (``to`` None: its status stays, as in a renewal).

    Fenced on the run's id, the statuses the move may start from and, for a worker,
    its attempt (the fencing token); ``None`` when the fence refused it. A move the
    state machine does not allow raises ``IllegalMove`` before anything is written.
    """
    fence = [Run.id == run_id, Run.status.in_(states.sources(move, to)), *also]
    if attempt is not None:
        fence.append(Run.attempt == attempt)
    if to is not None:
        values = {**values, "status": to}
    statement = (
        update(Run)
        .where(*fence)
        .values(**values)
        .returning(Run.entity_id, Run.attempt, Run.status, Run.operation_type)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else Moved(*row)


async def claim(
    session: AsyncSession, run_id: uuid.UUID, lease: timedelta, worker: str
) -> Moved | None:
    """Take the run if it is queued and first in line for its entity: the run as taken,
    with its new attempt.

    The attempt number is the fencing token: the claim increments it, every heartbeat,
    event and finish carries it, and whatever carries an older one is refused.
    """
    if session.get_bind().dialect.name != "sqlite":
        # Two claims for one entity wait on its row (FOR NO KEY UPDATE, which still lets
        # a new run's foreign-key check on the entity through: FOR UPDATE made run
        # requests wait on claims). SQLite needs no lock: a writing transaction holds
        # the database's one write lock from its BEGIN IMMEDIATE.
        locked = await session.scalar(
            select(Entity.id)
            .join(Run, Run.entity_id == Entity.id)
            .where(Run.id == run_id)
            .with_for_update(key_share=True, of=Entity)
        )
        if locked is None:
            return None
    now = utcnow()
    values = {
        "attempt": Run.attempt + 1,
        "started_at": now,
        "lease_expires_at": now + lease,
        "worker": worker,
        "error": None,
        "log_emitted": None,
        "log_complete": False,
    }
    # A new attempt waits until the last one's log is complete (its lines, and the line
    # saying why it ended): its lines then follow, never collide with, the old ones.
    previous_logged = or_(Run.attempt == 0, Run.log_complete.is_(True))
    return await _move(
        session,
        run_id,
        Move.claim,
        RunStatus.running,
        also=[~_ahead(), previous_logged],
        values=values,
    )


@functools.cache
def _busy() -> ColumnElement[bool]:
    """The run's entity has an active run (built once: building it costs more than the
    query it is part of)."""
    active = aliased(Run)
    return exists().where(active.entity_id == Run.entity_id, active.status.in_(ACTIVE))


@functools.cache
def _ahead() -> ColumnElement[bool]:
    """Another run of the same entity is active, or was queued before this one (built
    once, as ``_busy``)."""
    other = aliased(Run)
    return exists().where(
        other.entity_id == Run.entity_id,
        other.id != Run.id,
        or_(
            other.status.in_(ACTIVE),
            (other.status == RunStatus.queued)
            & or_(
                other.created_at < Run.created_at,
                (other.created_at == Run.created_at) & (other.id < Run.id),
            ),
        ),
    )


async def renew(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, lease: timedelta
) -> str | None:
    """Extend the lease; the run's status, or ``None`` when the lease is no longer ours."""
    values = {"lease_expires_at": utcnow() + lease}
    moved = await _move(session, run_id, Move.renew, attempt=attempt, values=values)
    return None if moved is None else moved.status


async def finish(
    session: AsyncSession,
    run_id: uuid.UUID,
    attempt: int,
    status: str,
    code: int,
    last_seq: int,
    at: datetime | None = None,
    error: str | None = None,
) -> uuid.UUID | None:
    """Record how the run ended, if ``attempt`` still holds it: its entity, now free.

    Both the worker and the relay (from the exit event) record it; the second is refused.
    ``error``: why it ended so, when the worker knows more than the status says.
    """
    values: dict[str, Any] = {
        "exit_code": code,
        "finished_at": at or utcnow(),
        "log_emitted": last_seq,
        "lease_expires_at": None,
    }
    if error is not None:
        values["error"] = error
    to = RunStatus(status)
    moved = await _move(session, run_id, Move.finish, to, attempt=attempt, values=values)
    return None if moved is None else moved.entity_id


async def settle(
    session: AsyncSession, run: Run, unsafe: Collection[str], max_attempts: int, processes: str
) -> tuple[RunStatus, dict[str, Any]] | None:
    """Lose or requeue a run whose lease expired: its new status, and what the run now
    keeps of the attempt (``lost_attempt``: why, when, its processes).

    ``unsafe``: its task types that are not safe to run again; ``processes``: what became
    of the attempt's processes, said in its log. ``None`` if its worker renewed the lease
    meanwhile. Either way the entity is free for its next run (which may be this one).
    """
    move, to, why = states.after_expired_lease(run.status, run.attempt, unsafe, max_attempts)
    final = to in states.FINAL
    now = utcnow()
    lost = lost_attempt(run.attempt, run.worker, now, why, processes)
    values = {
        "error": why,
        "lease_expires_at": None,
        "finished_at": now if final else None,
        "lost_attempts": [*run.lost_attempts, lost],
    }
    expired = Run.lease_expires_at < now
    moved = await _move(
        session, run.id, move, to, attempt=run.attempt, also=[expired], values=values
    )
    if moved is None:
        return None
    await _close_tasks(session, run.id, final)
    return to, lost


def lost_attempt(
    attempt: int, worker: str | None, at: datetime, why: str, processes: str
) -> dict[str, Any]:
    """What a run keeps of an attempt that ended without its worker finishing it."""
    return {
        "attempt": attempt,
        "worker": worker,
        "at": at.isoformat(),
        "why": why,
        "processes": processes,
    }


async def hand_back(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, why: str, last_seq: int
) -> bool:
    """A stopping worker gives its running run back to the queue (every task safe to run
    again); ``False`` if the run is no longer its to give (a cancel, a lost lease)."""
    current = await session.execute(
        select(Run.lost_attempts, Run.worker).where(Run.id == run_id, Run.attempt == attempt)
    )
    row = current.first()
    if row is None:
        return False
    lost = lost_attempt(attempt, row.worker, utcnow(), why, "stopped by its worker")
    values = {
        "error": why,
        "lease_expires_at": None,
        "log_emitted": last_seq,
        "lost_attempts": [*row.lost_attempts, lost],
    }
    moved = await _move(
        session, run_id, Move.requeue, RunStatus.queued, attempt=attempt, values=values
    )
    if moved is None:
        return False
    await _close_tasks(session, run_id, final=False)
    return True


async def cancel(session: AsyncSession, run_id: uuid.UUID) -> RunStatus | None:
    """Cancel a queued run at once, or ask a running one to stop: its new status.

    ``None`` if it is being cancelled already; ``IllegalMove`` if it has ended.
    """
    never_ran = Run.attempt == 0
    ended: dict[str, Any] = {
        "finished_at": utcnow(),
        # A run that never started has no log to wait for: complete, with no line.
        "log_emitted": case((never_ran, 0), else_=Run.log_emitted),
        "log_complete": case((never_ran, True), else_=Run.log_complete),
    }
    for to in (RunStatus.cancelled, RunStatus.cancelling):
        values = ended if to in states.FINAL else {}
        if await _move(session, run_id, Move.cancel, to, values=values) is not None:
            return to
    current = await session.scalar(select(Run.status).where(Run.id == run_id))
    if current is None:
        raise NotFound(f"no run with id {run_id}")
    if current != RunStatus.cancelling:
        states.check(Move.cancel, current, RunStatus.cancelled)
    return None


# Task rows.


async def record_task(
    session: AsyncSession, run_id: uuid.UUID, position: int, status: str, at: datetime
) -> None:
    """A task's status, with when it started (running) or ended (anything else)."""
    when = {"started_at": at} if status == TaskStatus.running else {"finished_at": at}
    await session.execute(
        update(RunTask)
        .where(RunTask.run_id == run_id, RunTask.position == position)
        .values(status=status, **when)
    )


def _task_update(when: str) -> Update:
    # Core, not the ORM's bulk UPDATE by primary key, which fails a whole batch when a
    # row is missing; like ``record_task``, a task row that is not there is left alone.
    table = cast(Table, RunTask.__table__)
    return (
        update(table)
        .where(table.c.run_id == bindparam("r"), table.c.position == bindparam("p"))
        .values({"status": bindparam("s"), when: bindparam("at")})
    )


_TASK_UPDATES = {when: _task_update(when) for when in ("started_at", "finished_at")}


async def record_tasks(
    session: AsyncSession, events: Sequence[tuple[uuid.UUID, int, str, datetime]]
) -> None:
    """Task events (run, position, status, when) in bulk: the starts, then the ends (a
    task's end always comes after its start), one executemany each."""
    starts = [e for e in events if e[2] == TaskStatus.running]
    ends = [e for e in events if e[2] != TaskStatus.running]
    for rows, when in ((starts, "started_at"), (ends, "finished_at")):
        if rows:
            params = [{"r": r, "p": p, "s": s, "at": at} for r, p, s, at in rows]
            await session.execute(_TASK_UPDATES[when], params)


async def record_task_ends(
    session: AsyncSession, run_id: uuid.UUID, ended: Sequence[tuple[int, str, datetime]]
) -> None:
    """How tasks ended, (position, status, when), in one statement."""
    await record_tasks(session, [(run_id, position, status, at) for position, status, at in ended])


async def _close_tasks(session: AsyncSession, run_id: uuid.UUID, final: bool) -> None:
    """Tasks a settled run left unfinished: skipped, or pending again when requeued."""
    unfinished = (TaskStatus.pending, TaskStatus.running)
    await session.execute(
        update(RunTask)
        .where(RunTask.run_id == run_id, RunTask.status.in_(unfinished))
        .values(status=TaskStatus.skipped if final else TaskStatus.pending)
    )


# The relay's writes: events fenced on the attempt, log lines in bulk.


class EventFence(NamedTuple):
    """What an event of the run is checked against."""

    attempt: int
    status: str
    entity_id: uuid.UUID


async def lock_for_events(
    session: AsyncSession, run_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, EventFence]:
    """The runs' attempts, after a write that locks their rows first, so that no claim
    can change an attempt between the relay's check and its insert."""
    await session.execute(update(Run).where(Run.id.in_(run_ids)).values(attempt=Run.attempt))
    rows = await session.execute(
        select(Run.id, Run.attempt, Run.status, Run.entity_id).where(Run.id.in_(run_ids))
    )
    return {row.id: EventFence(row.attempt, row.status, row.entity_id) for row in rows}


# The relay's bulk insert, as the driver's own SQL: at 10,000 lines a batch, the ORM's
# bulk path and SQLAlchemy's per-row bind processing cost more than the INSERT itself.
_INSERT_LINES = {
    "sqlite": "INSERT INTO run_log_lines (run_id, seq, stream, line, at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, seq) DO NOTHING",
    "postgresql": "INSERT INTO run_log_lines (run_id, seq, stream, line, at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, seq) DO NOTHING",
}

LogLine = tuple[int, str, str, float]  # seq, stream, line, epoch seconds: the wire form


class _SqliteTimes:
    """Epoch seconds as SQLAlchemy's DateTime stores a UTC time on SQLite (which
    ``UTCDateTime`` reads back); the date and time part made once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        # Rounded to the microsecond as datetime.fromtimestamp rounds (its own steps).
        fraction, whole = math.modf(epoch)
        second, micro = divmod(int(whole) * 1_000_000 + round(fraction * 1e6), 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._prefix}.{micro:06d}"


async def insert_lines(session: AsyncSession, run_id: uuid.UUID, lines: Sequence[LogLine]) -> None:
    """A run's lines, in bulk; a line stored already (same run and seq) is skipped."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        times, key = _SqliteTimes(), run_id.hex  # as the Uuid type stores it there
        rows: list[tuple[Any, ...]] = [(key, q, s, t, times(at)) for q, s, t, at in lines]
    else:
        rows = [(run_id, q, s, t, datetime.fromtimestamp(at, UTC)) for q, s, t, at in lines]
    connection = await session.connection()
    for start in range(0, len(rows), INSERT_CHUNK):
        await connection.exec_driver_sql(_INSERT_LINES[dialect], rows[start : start + INSERT_CHUNK])


async def insert_log_lines(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """``insert_lines`` from ``{run_id, seq, stream, line, at}`` rows (``at`` aware)."""
    by_run: dict[uuid.UUID, list[LogLine]] = {}
    for row in rows:
        line = (row["seq"], row["stream"], row["line"], row["at"].timestamp())
        by_run.setdefault(row["run_id"], []).append(line)
    for run_id, lines in by_run.items():
        await insert_lines(session, run_id, lines)


async def mark_log_complete(
    session: AsyncSession, run_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Complete once every line 1..last the worker emitted is stored (none missing);
    the runs marked complete now."""
    if not run_ids:
        return set()
    rows = await session.execute(
        select(Run.id, Run.log_emitted).where(
            Run.id.in_(run_ids), Run.log_emitted.is_not(None), Run.log_complete.is_(False)
        )
    )
    completed: set[uuid.UUID] = set()
    for run_id, emitted in rows:
        if emitted and not await _all_stored(session, run_id, emitted):
            continue
        await session.execute(update(Run).where(Run.id == run_id).values(log_complete=True))
        completed.add(run_id)
    return completed


async def _all_stored(session: AsyncSession, run_id: uuid.UUID, emitted: int) -> bool:
    """Lines 1..emitted are all stored (a run that emitted none has all of them)."""
    # While the last line emitted is not stored, some line is missing for sure: one
    # index lookup, where counting read every line stored so far, batch after batch.
    if await last_seq(session, run_id) < emitted:
        return False
    stored = await session.scalar(
        select(func.count())
        .select_from(RunLogLine)
        .where(RunLogLine.run_id == run_id, RunLogLine.seq <= emitted)
    )
    return stored == emitted


async def lost_unlogged(session: AsyncSession, limit: int = 500) -> list[Run]:
    """Runs whose last attempt ended without its worker (settled by the lease) and whose
    log does not say so yet."""
    query = (
        select(Run)
        .where(
            Run.attempt > 0,
            Run.log_emitted.is_(None),
            Run.status.in_((RunStatus.queued, RunStatus.lost, RunStatus.cancelled)),
        )
        .limit(limit)
    )
    return list(await session.scalars(query))


async def log_lost_attempt(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, line: str, at: datetime
) -> int | None:
    """The line that ends a lost attempt's log, after every line it sent: its number,
    and the attempt's log is then whole. ``None`` if said already (or not this attempt).

    Called by the relay in stream order: the attempt's worker is gone, so nothing of it
    comes after the sweeper's event.
    """
    seq = await last_seq(session, run_id) + 1
    written = await session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.attempt == attempt,
            Run.log_emitted.is_(None),
            Run.status.not_in(ACTIVE),
        )
        .values(log_emitted=seq)
        .returning(Run.id)
    )
    if written.first() is None:
        return None
    await insert_log_lines(
        session, [{"run_id": run_id, "seq": seq, "stream": "system", "line": line, "at": at}]
    )
    return seq


async def log_after(
    session: AsyncSession, run_id: uuid.UUID, after: int, limit: int
) -> list[tuple[int, str, str]]:
    """Up to ``limit`` lines after ``after`` as (seq, stream, text), for a log tail: plain
    rows, no ORM objects and no time to parse, the cheapest read of a page."""
    query = (
        select(RunLogLine.seq, RunLogLine.stream, RunLogLine.line)
        .where(RunLogLine.run_id == run_id, RunLogLine.seq > after)
        .order_by(RunLogLine.seq)
        .limit(limit)
    )
    return [(seq, stream, line) for seq, stream, line in await session.execute(query)]


# Reads for the lists at fleet size (apart from the moves above).


async def newest_page(
    session: AsyncSession,
    *,
    entity_id: uuid.UUID | None,
    operation_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    offset: int,
    teams: set[uuid.UUID] | None,
    tasks: bool = True,
) -> tuple[list[Run], int]:
    """A page of runs, newest first, and how many match; ``teams``: only theirs;
    ``tasks``: with their task rows (a list page that shows none leaves them).

    Ordered by (created_at, id) both descending, which ``ix_runs_created_at_id`` (with
    a status, ``ix_runs_status_created_at_id``) serves as it is, so a page is an index
    walk that stops at its last row, not a sort of every run.
    """
    filters: list[ColumnElement[bool]] = []
    if entity_id is not None:
        filters.append(Run.entity_id == entity_id)
    if operation_id is not None:
        filters.append(Run.operation_id == operation_id)
    if status is not None:
        filters.append(Run.status == status)
    query = select(Run).where(*filters)
    if teams is not None:
        # Checked row by row as the index walk goes; a join would make SQLite start
        # from the team's entities and sort all their runs.
        query = query.where(exists().where(Entity.id == Run.entity_id, Entity.team_id.in_(teams)))
    query = query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit).offset(offset)
    if tasks:
        query = query.options(selectinload(Run.tasks))
    rows = await session.execute(query)
    return list(rows.scalars()), await _count(session, filters, teams)


async def _count(
    session: AsyncSession, filters: list[ColumnElement[bool]], teams: set[uuid.UUID] | None
) -> int:
    query = select(func.count()).select_from(Run).where(*filters)
    if teams is not None:
        query = query.join(Entity, Entity.id == Run.entity_id).where(Entity.team_id.in_(teams))
    return int(await session.scalar(query) or 0)


class StoredLine(NamedTuple):
    """A stored log line as plain values (no ORM object: a page holds thousands)."""

    seq: int
    stream: str
    line: str
    at: datetime


async def lines_after(
    session: AsyncSession, run_id: uuid.UUID, after: int, limit: int
) -> list[StoredLine]:
    """Up to ``limit`` lines after ``after``, in order: what ``log_after`` reads, as
    rows, half the time for a page of 1,000 lines (the primary key serves any depth)."""
    query = (
        select(RunLogLine.seq, RunLogLine.stream, RunLogLine.line, RunLogLine.at)
        .where(RunLogLine.run_id == run_id, RunLogLine.seq > after)
        .order_by(RunLogLine.seq)
        .limit(limit)
    )
    return [StoredLine(*row) for row in await session.execute(query)]


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Every run's status, counted (the metrics page; the status index answers it)."""
    query = select(Run.status, func.count()).group_by(Run.status)
    return {str(status): int(count) for status, count in (await session.execute(query)).all()}


async def oldest_queued(session: AsyncSession) -> datetime | None:
    query = select(func.min(Run.created_at)).where(Run.status == RunStatus.queued)
    return (await session.execute(query)).scalar_one_or_none()
