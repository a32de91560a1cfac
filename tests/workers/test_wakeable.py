"""The worker's wake-ups, which override two of arq's private methods (arq is pinned).

An arq upgrade that renames or reshapes them must fail here, not in production.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.worker import Worker, func

from app.queue import QueueClient, create_redis
from workers.main import WakeableWorker

# Longer than any test may run: a job that starts did so because of a wake-up, not a poll.
NEVER = 3600


def test_the_private_methods_it_overrides_are_there() -> None:
    for name in ("_poll_iteration", "_release_sem_dec_counter_on_complete"):
        assert name in vars(Worker), f"arq.Worker has no {name} any more"
    assert inspect.iscoroutinefunction(Worker._poll_iteration)
    assert list(inspect.signature(Worker._poll_iteration).parameters) == ["self"]
    assert list(inspect.signature(Worker._release_sem_dec_counter_on_complete).parameters) == [
        "self"
    ]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[QueueClient]:
    client = create_redis(redis_url, 5)
    yield client
    await client.aclose()


async def test_jobs_start_on_a_wake_up_and_when_a_slot_frees(redis: QueueClient) -> None:
    queue = f"aegir:test:{uuid.uuid4().hex}"
    done: list[int] = []
    all_done = asyncio.Event()

    async def job(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> None:
        done.append(args[0])
        if len(done) == 3:
            all_done.set()

    worker = WakeableWorker(
        [func(job, name="job")],
        queue_name=queue,
        redis_pool=redis,
        handle_signals=False,
        keep_result=0,
        poll_delay=NEVER,
        max_jobs=1,
    )
    loop = asyncio.create_task(worker.main())
    try:
        await asyncio.sleep(0.2)  # the first poll found an empty queue; next one in an hour
        for number in (1, 2, 3):
            await redis.enqueue_job("job", number, _queue_name=queue)
        worker.wake.set()  # what the enqueue's pub/sub message does in the worker process
        # One slot: jobs 2 and 3 start only because a finished job wakes the loop.
        await all_done.wait()
        assert sorted(done) == [1, 2, 3]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
