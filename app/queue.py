"""The one seam to arq: the rest of Aegir enqueues, wakes and reads through here.

arq is in maintenance-only mode; keeping every use of it behind these functions means
replacing it touches this package alone.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable
from typing import Any, cast

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix

RUNS_QUEUE = "aegir:queue:runs"
RUN_JOB = "execute_run"
# Actions wait in a plain list, not as arq jobs (see ``enqueue_action``).
ACTIONS_LIST = "aegir:actions"


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
    """Queue an action for the first free worker; it will not start once ``expires``
    seconds have passed. Its id, to wait for its answer with (``action_reply``).

    A plain Redis list, not an arq job: an action is tried once, never retried, and
    answered through a list of its own, so arq's job records, in-progress keys and polls
    would only add round trips to a click (one LPUSH here; a worker waiting in BRPOP
    has it at once).
    """
    job_id = uuid.uuid4().hex
    body = {**payload, "job_id": job_id, "expires_at": time.time() + expires}
    await cast(Awaitable[int], redis.lpush(ACTIONS_LIST, json.dumps(body)))
    return job_id


async def next_action(redis: ArqRedis, wait: float) -> dict[str, Any] | None:
    """The oldest queued action that has not expired, waiting up to ``wait`` seconds
    (whole seconds, at least 1) for one; expired ones are dropped, as nobody waits for
    their answer any more."""
    while True:
        pending = redis.brpop([ACTIONS_LIST], timeout=max(int(wait), 1))
        reply = await cast(Awaitable[list[bytes] | None], pending)
        if reply is None:
            return None
        action: dict[str, Any] = json.loads(reply[1])
        if action["expires_at"] > time.time():
            return action


async def action_reply(redis: ArqRedis, job_id: str, wait: float) -> dict[str, Any] | None:
    """The action's answer, or ``None`` if none came within ``wait`` seconds."""
    # BLPOP takes fractions of a second since Redis 6; redis-py's hints say int.
    pending = redis.blpop([action_reply_key(job_id)], timeout=cast(int, wait))
    reply = await cast(Awaitable[list[bytes] | None], pending)
    if reply is None:
        return None
    answer: dict[str, Any] = json.loads(reply[1])
    return answer
