"""Execute one run: claim it, run its tasks in order through their executors, report."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import logs
from app.catalog.inputs import InvalidInput
from app.catalog.registry import Catalog
from app.config import Settings
from app.db import session_scope
from app.dispatch.batches import Services
from app.dispatch.effects import apply_on_success, has_effects
from app.dispatch.executor_input import typed_input
from app.dispatch.queueing import next_runs
from app.entities.run import repository as runs
from app.entities.run.states import RunStatus, TaskStatus
from app.events import TaskEvent, publish, status_messages
from app.metrics import RUN_SECONDS, observe
from app.queue import QueueClient, enqueue_run
from app.security.crypto import SecretBox
from executors import executor_for
from executors.ansible import SshAccess
from executors.base import EXIT_CANCELLED, ExecutorUnavailable, TaskContext
from workers import lease
from workers.emitter import RunEmitter, TaskEmitter, cancel_quietly
from workers.fleet import WorkerFleet

logger = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What a worker process shares between its jobs."""

    settings: Settings
    catalog: Catalog
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: QueueClient
    name: str
    box: SecretBox
    cancels: dict[uuid.UUID, asyncio.Event] = field(default_factory=dict)
    # Set when the worker is asked to stop (SIGTERM): runs stopped now are handed back.
    stopping: bool = False


async def execute_run(state: WorkerState, run_id: uuid.UUID) -> str | None:
    """The job: ``None`` if the run was not ours to take, else its final status."""
    token = logs.run_id.set(str(run_id))
    try:
        return await _execute(state, run_id)
    finally:
        logs.run_id.reset(token)


async def _execute(state: WorkerState, run_id: uuid.UUID) -> str | None:
    async with session_scope(state.sessionmaker) as session:
        claimed = await lease.claim(
            session, state.catalog, state.box, run_id, state.settings.run_lease, state.name
        )
    if claimed is None:
        return None
    started = time.monotonic()
    logger.info("run %s: %s started (attempt %d)", run_id, claimed.operation.name, claimed.attempt)
    await publish(state.redis, status_messages(run_id, RunStatus.running, claimed.entity["id"]))
    cancel = state.cancels.setdefault(run_id, asyncio.Event())
    emitter = RunEmitter(
        state.redis, str(run_id), claimed.attempt, claimed.first_seq, claimed.secrets
    )
    fenced = asyncio.Event()
    heartbeat = asyncio.create_task(_heartbeat(state, claimed, cancel, emitter, fenced))
    try:
        status, code = await _run_steps(state, claimed, emitter, cancel)
    finally:
        await cancel_quietly(heartbeat)
        state.cancels.pop(run_id, None)
    if fenced.is_set():
        # The lease is not ours: its lines go out, its end is the lease's to settle.
        await emitter.close()
        return None
    error = None
    if state.stopping and status == RunStatus.cancelled:
        if await _hand_back(state, claimed, emitter):
            return RunStatus.queued
        error = f"its worker {state.name} was shut down before the run ended"
    await emitter.exit(status, code)
    await emitter.close()
    await _finish(state, claimed, status, code, emitter.seq, error)
    logger.info("run %s: %s %s (exit %d)", run_id, claimed.operation.name, status, code)
    labels = (str(claimed.entity.get("kind")), claimed.operation.name, status)
    await observe(state.redis, RUN_SECONDS, labels, time.monotonic() - started)
    return status


async def _hand_back(state: WorkerState, claimed: lease.Claim, emitter: RunEmitter) -> bool:
    """The worker is shutting down: give the run back to the queue, to run again on a
    worker that stays, if every task is safe to run again and the run is still ours
    (not cancelled meanwhile). ``False``: it ends here instead."""
    if not all(step.task_type.safe_to_rerun for step in claimed.steps):
        return False
    why = f"its worker {state.name} was shut down during attempt {claimed.attempt}; handed back"
    await emitter.log("system", f"attempt {claimed.attempt} stopped: {why} to run again")
    try:
        async with session_scope(state.sessionmaker) as session:
            handed = await runs.hand_back(
                session, claimed.run_id, claimed.attempt, why, emitter.seq
            )
    except Exception:
        logger.warning("run %s: not handed back", claimed.run_id, exc_info=True)
        return False  # finished as cancelled instead; the line above stays true
    if not handed:
        return False
    # The relay closes this attempt's log on this event, then enqueues the run again.
    await emitter.exit(RunStatus.queued, EXIT_CANCELLED)
    await emitter.close()
    await publish(
        state.redis,
        status_messages(claimed.run_id, RunStatus.queued, claimed.entity["id"], error=why),
    )
    return True


async def _finish(
    state: WorkerState,
    claimed: lease.Claim,
    status: str,
    code: int,
    last: int,
    error: str | None = None,
) -> None:
    """Record the end ourselves, while the lease is still ours.

    The relay would record it too, from the exit event; but it may still be storing a
    long log, and a lease left to expire meanwhile would look like a dead worker.
    """
    for delay in (0.1, 0.5, 1.0, 2.0):
        try:
            async with session_scope(state.sessionmaker) as session:
                entity_id = await runs.finish(
                    session, claimed.run_id, claimed.attempt, status, code, last, error=error
                )
                if entity_id is not None:
                    # Stored before the run reads as ended, so the next run sees them.
                    await lease.store_outputs(session, entity_id, claimed.outputs)
                    await lease.store_task_ends(session, claimed.run_id, claimed.ended_tasks)
                    if status == RunStatus.succeeded and has_effects(claimed.operation):
                        await apply_on_success(session, state.catalog, claimed.run_id)
                following = await next_runs(session, [entity_id]) if entity_id else []
            break
        except Exception:
            logger.warning("run %s: end not recorded yet; retrying", claimed.run_id, exc_info=True)
            await asyncio.sleep(delay)
    else:
        return  # the relay records it from the exit event
    if entity_id is None:
        return
    await publish(state.redis, status_messages(claimed.run_id, status, entity_id, exit_code=code))
    for run_id in following:
        await enqueue_run(state.redis, run_id)


async def _run_steps(
    state: WorkerState, claimed: lease.Claim, emitter: RunEmitter, cancel: asyncio.Event
) -> tuple[str, int]:
    steps = [step for step in claimed.steps if not step.undo]
    undo = [step for step in claimed.steps if step.undo]
    completed: list[str] = []
    for index, step in enumerate(steps):
        if cancel.is_set():
            _skip(emitter, claimed, steps[index:], TaskStatus.cancelled)
            await _undo(state, claimed, emitter, undo, "run was cancelled", completed)
            return RunStatus.cancelled, EXIT_CANCELLED
        _task_status(emitter, claimed, step.position, TaskStatus.running)
        code = await _run_step(state, claimed, step, emitter, cancel, tuple(completed))
        claimed.tasks[step.key]["outputs"].update(claimed.outputs.get(step.key, {}))
        if cancel.is_set():
            _task_status(emitter, claimed, step.position, TaskStatus.cancelled)
            _skip(emitter, claimed, steps[index + 1 :], TaskStatus.cancelled)
            await _undo(state, claimed, emitter, undo, f"step {step.key} was cancelled", completed)
            return RunStatus.cancelled, EXIT_CANCELLED
        if code != 0:
            _task_status(emitter, claimed, step.position, TaskStatus.failed)
            _skip(emitter, claimed, steps[index + 1 :], TaskStatus.skipped)
            await _undo(state, claimed, emitter, undo, f"step {step.key} failed", completed)
            return RunStatus.failed, code
        _task_status(emitter, claimed, step.position, TaskStatus.succeeded)
        completed.append(step.key)
    _skip(emitter, claimed, undo, TaskStatus.skipped)
    return RunStatus.succeeded, 0


async def _undo(
    state: WorkerState,
    claimed: lease.Claim,
    emitter: RunEmitter,
    undo: list[lease.Step],
    why: str,
    completed: list[str],
) -> None:
    """After a failed or cancelled step: the undo steps, told which steps had completed."""
    if undo:
        done = ", ".join(completed) or "none"
        await emitter.log("system", f"{why}; undoing what this run did ({done})")
    for step in undo:
        _task_status(emitter, claimed, step.position, TaskStatus.running)
        code = await _run_step(state, claimed, step, emitter, asyncio.Event(), tuple(completed))
        status = TaskStatus.succeeded if code == 0 else TaskStatus.failed
        _task_status(emitter, claimed, step.position, status)
        if code != 0:
            await emitter.log("system", f"undo step {step.key} failed (exit code {code})")


async def _run_step(
    state: WorkerState,
    claimed: lease.Claim,
    step: lease.Step,
    emitter: RunEmitter,
    cancel: asyncio.Event,
    completed: tuple[str, ...] = (),
) -> int:
    try:
        typed = typed_input(state.catalog, claimed.entity, claimed.tasks, step.key)
    except InvalidInput as error:
        await emitter.log("system", f"task {step.key} cannot run: {error}")
        return 127
    context = TaskContext(
        run_id=str(claimed.run_id),
        attempt=claimed.attempt,
        key=step.key,
        task_type=step.task_type.name,
        values=typed.values,
        entity=typed.entity,
        tasks=typed.tasks,
        work_dir=state.settings.work_dir or state.settings.var_dir / "work",
        timeout=step.task_type.timeout.total_seconds(),
        cancel_grace=state.settings.cancel_grace.total_seconds(),
        secrets=claimed.secrets,
        completed=completed,
        acme=state.settings.acme(),
    )
    task_emitter = TaskEmitter(
        emitter,
        step.key,
        step.task_type.name,
        step.task_type.outputs,
        claimed.outputs.setdefault(step.key, {}),
    )
    try:
        fleet = WorkerFleet(state.sessionmaker, Services(state.catalog, state.redis, state.box))
        executor = executor_for(step.task_type, ssh_access(state.settings), fleet=fleet)
        return await executor.run(context, task_emitter, cancel)
    except ExecutorUnavailable as error:
        await emitter.log("system", f"task {step.key} cannot run: {error}")
        return 127
    except Exception as error:
        logger.exception("run %s task %s", claimed.run_id, step.key)
        await emitter.log("system", f"task {step.key} failed inside Aegir: {error!r}")
        return 1


def _task_status(emitter: RunEmitter, claimed: lease.Claim, position: int, status: str) -> None:
    at = time.time()
    if status != TaskStatus.running:
        claimed.ended_tasks[position] = (status, at)
    emitter.event(
        TaskEvent(
            t="task",
            run=str(claimed.run_id),
            attempt=claimed.attempt,
            position=position,
            status=status,
            at=at,
        )
    )


def _skip(emitter: RunEmitter, claimed: lease.Claim, steps: list[lease.Step], status: str) -> None:
    for step in steps:
        _task_status(emitter, claimed, step.position, status)


async def _heartbeat(
    state: WorkerState,
    claimed: lease.Claim,
    cancel: asyncio.Event,
    emitter: RunEmitter,
    fenced: asyncio.Event,
) -> None:
    """Renew the lease; a cancel request, or a lease taken from us, stops the run.

    A lease this worker has not renewed for a whole lease (the database unreachable from
    here) stops the attempt, which is then the lease's to settle (``fenced``): from then
    on the sweeper may give the run to another worker, and nothing of this attempt may
    still be running. An outage shorter than the lease is ridden out.
    """
    interval = state.settings.run_heartbeat.total_seconds()
    lease_s = state.settings.run_lease.total_seconds()
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            async with session_scope(state.sessionmaker) as session:
                status = await runs.renew(
                    session, claimed.run_id, claimed.attempt, state.settings.run_lease
                )
        except Exception as error:
            logger.warning("run %s: lease not renewed this time (%s)", claimed.run_id, error)
            if time.monotonic() - renewed >= lease_s:
                await emitter.log(
                    "system",
                    f"the lease could not be renewed for {time.monotonic() - renewed:.0f}s "
                    "(the database is unreachable from this worker); stopping this attempt",
                )
                fenced.set()
                cancel.set()
                return
            continue
        renewed = time.monotonic()
        if status is None:
            logger.warning(
                "run %s: lease lost; stopping attempt %s", claimed.run_id, claimed.attempt
            )
            fenced.set()
            cancel.set()
            return
        if status == RunStatus.cancelling:
            cancel.set()


def ssh_access(settings: Settings) -> SshAccess:
    return SshAccess(settings.ssh_key_file, settings.ssh_known_hosts_file)


def stop_all(state: WorkerState) -> None:
    """At shutdown: ask every running executor to stop."""
    for event in state.cancels.values():
        event.set()
