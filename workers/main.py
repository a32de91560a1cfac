"""The worker process: an arq worker for runs, woken by push, and a loop that takes
actions off their list (``app.queue.enqueue_action``) as they come.

arq's own loop sleeps ``poll_delay`` between looks at the queue, so every job waits
up to that long. Here each enqueue publishes a wake-up, and the loop waits for it
(or for ``worker_poll`` at most), so a job starts about a Redis round trip after it
was enqueued. arq's loop also ends on a lost Redis connection; this one waits and
carries on, so a worker outlives a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from typing import Any, TypedDict, cast

from arq.worker import Worker, func
from redis.exceptions import RedisError

from app.catalog.registry import catalog_with
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.events import CANCEL_CHANNEL
from app.queue import (
    RUN_JOB,
    RUNS_QUEUE,
    QueueClient,
    action_reply_key,
    create_redis,
    next_action,
    wake_channel,
)
from app.security.crypto import SecretBox
from workers.actions import encode_reply, execute_action
from workers.emitter import cancel_quietly
from workers.runner import WorkerState, execute_run, stop_all

logger = logging.getLogger("aegir.worker")

REPLY_TTL = 60
ACTION_SLOTS = 20  # actions run at once by one worker
ACTION_WAIT = 1.0  # seconds a BRPOP for the next action blocks


class WakeableWorker(Worker):
    """An arq worker whose wait between polls ends early on a wake-up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self.wake.set()  # a slot is free: look again now

    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        while True:
            try:
                self.wake.clear()
                await self._poll_iteration()
            except (RedisError, OSError) as error:
                logger.warning("%s: Redis unavailable (%s); retrying", self.queue_name, error)
                await asyncio.sleep(0.5)
                continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can leave a cancelled
            # task waiting for ever here (seen at shutdown), so the worker never exited.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_delay_s):
                    await self.wake.wait()


class WorkerContext(TypedDict):
    """What arq hands each job: our state, and arq's own Redis pool (set in ``main``)."""

    state: WorkerState
    redis: QueueClient


def _context(ctx: dict[Any, Any]) -> WorkerContext:
    # arq types a job's context as a plain dict; ours is built in serve_worker and main.
    return cast(WorkerContext, ctx)


async def _run_job(ctx: dict[Any, Any], run_id: str) -> str | None:
    return await execute_run(_context(ctx)["state"], uuid.UUID(run_id))


async def _answer(state: WorkerState, payload: dict[str, Any]) -> None:
    reply = await execute_action(state, payload)
    key = action_reply_key(payload["job_id"])
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, encode_reply(reply))
        pipe.expire(key, REPLY_TTL)
        await pipe.execute()


class ActionServer:
    """Takes actions off their list, ``ACTION_SLOTS`` at a time, each answered within
    the request that waits for it. Stopping takes no new one; those running finish."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.slots = asyncio.Semaphore(ACTION_SLOTS)
        self.tasks: set[asyncio.Task[None]] = set()

    async def main(self) -> None:
        while True:
            await self.slots.acquire()
            try:
                payload = await next_action(self.state.redis, ACTION_WAIT)
            except (RedisError, OSError) as error:
                self.slots.release()
                logger.warning("actions: Redis unavailable (%s); retrying", error)
                await asyncio.sleep(0.5)
                continue
            if payload is None:
                self.slots.release()
                continue
            task = asyncio.create_task(_answer(self.state, payload))
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("action failed", exc_info=task.exception())


async def _listen(state: WorkerState, wakers: dict[str, WakeableWorker]) -> None:
    """Wake-ups and cancel requests, over pub/sub; resubscribes after a Redis restart."""
    channels = [wake_channel(queue) for queue in wakers] + [CANCEL_CHANNEL]
    while True:
        try:
            async with state.redis.pubsub() as pubsub:
                await pubsub.subscribe(*channels)
                for worker in wakers.values():
                    worker.wake.set()  # catch up with whatever came while away
                async for message in pubsub.listen():
                    _dispatch(message, state, wakers)
        except (RedisError, OSError) as error:
            logger.warning("pub/sub lost (%s); resubscribing", error)
            await asyncio.sleep(0.5)


def _dispatch(
    message: dict[str, Any], state: WorkerState, wakers: dict[str, WakeableWorker]
) -> None:
    if message.get("type") != "message":
        return
    channel = message["channel"].decode()
    if channel == CANCEL_CHANNEL:
        with contextlib.suppress(ValueError):
            event = state.cancels.get(uuid.UUID(message["data"].decode()))
            if event is not None:
                event.set()
        return
    for queue, worker in wakers.items():
        if channel == wake_channel(queue):
            worker.wake.set()


def _watch_children_without_threads() -> None:
    """Python 3.11 waits for each command in a thread of its own (ThreadedChildWatcher):
    a thread, and glibc's memory arena for it, per command of every run, which grew the
    worker's RSS by 13 % over 10,000 runs. A pidfd watcher waits in the event loop
    instead (Linux 5.3+; the default from Python 3.12, where this is not needed)."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    if not isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop):
        return  # uvloop: libuv waits for children itself, without watchers
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return  # a kernel without pidfds: keep the threaded watcher
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


async def serve_worker(settings: Settings) -> None:
    _watch_children_without_threads()
    engine = create_engine(settings.database_url, settings)
    redis = create_redis(settings.redis_url, settings.redis_timeout.total_seconds())
    state = WorkerState(
        settings=settings,
        catalog=catalog_with(tuple(settings.catalog_modules)),
        sessionmaker=create_sessionmaker(engine),
        redis=redis,
        name=f"{socket.gethostname()}:{os.getpid()}",
        box=SecretBox(settings.secret_key),
    )
    poll = settings.worker_poll.total_seconds()
    context = WorkerContext(state=state, redis=redis)
    common: dict[str, Any] = dict(
        redis_pool=redis, handle_signals=False, keep_result=0, poll_delay=poll, ctx=context
    )
    wakers = {
        RUNS_QUEUE: WakeableWorker(
            [func(_run_job, name=RUN_JOB, keep_result=0, max_tries=1_000)],
            queue_name=RUNS_QUEUE,
            max_jobs=settings.worker_max_jobs,
            job_timeout=7 * 24 * 3600,
            **common,
        ),
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    actions = ActionServer(state)
    taking = asyncio.create_task(actions.main())
    tasks = [asyncio.create_task(worker.main()) for worker in wakers.values()]
    tasks.append(asyncio.create_task(_listen(state, wakers)))
    logger.info("worker %s ready", state.name)
    await stop.wait()
    logger.info("worker %s stopping: no new runs", state.name)
    await cancel_quietly(taking)  # no new action; those running are waited for below
    await _shutdown(state, wakers, tasks, actions.tasks)
    await redis.aclose()
    await engine.dispose()


async def _shutdown(
    state: WorkerState,
    wakers: dict[str, WakeableWorker],
    tasks: list[asyncio.Task[Any]],
    actions: set[asyncio.Task[None]],
) -> None:
    """Take no new job; let the running ones finish within the stop grace; then stop them
    (runs safe to run again are handed back, the others end cancelled) and wait for that."""
    for worker in wakers.values():
        worker.allow_pick_jobs = False
    running = [t for worker in wakers.values() for t in worker.tasks.values()]
    running += actions
    if running:
        logger.info("worker %s: waiting for %d jobs to finish", state.name, len(running))
        _done, pending = await asyncio.wait(
            running, timeout=state.settings.worker_stop_grace.total_seconds()
        )
        if pending:
            logger.info("worker %s: stopping %d runs still going", state.name, len(pending))
            state.stopping = True
            stop_all(state)
            # Their executors stop within the cancel grace; their ends are then recorded.
            await asyncio.wait(pending, timeout=state.settings.cancel_grace.total_seconds() + 10)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
