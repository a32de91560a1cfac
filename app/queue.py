"""The one seam to arq: the rest of Aegir enqueues, wakes and reads through here.

arq is in maintenance-only mode; keeping every use of it behind these functions means
replacing it touches this package alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable
from typing import Any, cast

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

RUNS_QUEUE = "aegir:queue:runs"
ACTIONS_QUEUE = "aegir:queue:actions"
RUN_JOB = "execute_run"
ACTION_JOB = "execute_action"


# The client type the rest of Aegir holds: a redis-py asyncio client arq can enqueue with.
QueueClient = ArqRedis


def wake_channel(queue: str) -> str:
    return f"aegir:wake:{queue}"


def action_reply_key(job_id: str) -> str:
    return f"aegir:action-reply:{job_id}"


def create_redis(url: str, timeout: float) -> ArqRedis:
    """One client type everywhere: a redis-py asyncio client that arq can enqueue with."""
    client: ArqRedis = ArqRedis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return client


async def enqueue_run(redis: ArqRedis, run_id: uuid.UUID) -> bool:
    """Enqueue a committed run; idempotent, as the job id is the run id."""
    job = await redis.enqueue_job(RUN_JOB, str(run_id), _job_id=str(run_id), _queue_name=RUNS_QUEUE)
    await redis.publish(wake_channel(RUNS_QUEUE), b"1")
    return job is not None


async def release_run(redis: ArqRedis, run_id: uuid.UUID) -> None:
    """Forget a job whose worker died, so that enqueueing its run again takes effect."""
    await redis.delete(in_progress_key_prefix + str(run_id), job_key_prefix + str(run_id))
    await redis.zrem(RUNS_QUEUE, str(run_id))


async def enqueue_action(redis: ArqRedis, payload: dict[str, Any], expires: float) -> str:
    """Queue an action on the fast queue; it will not start once ``expires`` has passed."""
    job_id = uuid.uuid4().hex
    await redis.enqueue_job(
        ACTION_JOB,
        {**payload, "job_id": job_id},
        _job_id=job_id,
        _queue_name=ACTIONS_QUEUE,
        _expires=expires,
    )
    await redis.publish(wake_channel(ACTIONS_QUEUE), b"1")
    return job_id


async def action_reply(redis: ArqRedis, job_id: str, wait: float) -> dict[str, Any] | None:
    """The action's answer, or ``None`` if none came within ``wait`` seconds."""
    # BLPOP takes fractions of a second since Redis 6; redis-py's hints say int.
    pending = redis.blpop([action_reply_key(job_id)], timeout=cast(int, wait))
    reply = await cast(Awaitable[list[bytes] | None], pending)
    if reply is None:
        return None
    answer: dict[str, Any] = json.loads(reply[1])
    return answer
