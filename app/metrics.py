"""Prometheus metrics that are right whichever API process is scraped, with any number of
API, worker and relay processes.

Every figure comes from state all processes share. What is a count of rows (runs by
status, the queued runs) is read from the database at scrape time; the queues and the
relay's lag are read from Redis; what happens inside one process (an action's latency,
a run's duration, a websocket subscriber) is added to Redis as it happens. Nothing is
kept in a process's memory, so a scrape of any API process answers for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.events import EVENTS_STREAM, RELAY_GROUP
from app.queue import ACTIONS_LIST, RUNS_QUEUE

logger = logging.getLogger("aegir.metrics")

PREFIX = "aegir:metrics:"
SUBSCRIBERS = PREFIX + "websockets:"  # one key per API process, with a TTL
SUBSCRIBERS_TTL = 60
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return f"{PREFIX}histogram:{self.name}"


ACTION_SECONDS = Histogram(
    "aegir_action_seconds",
    "Time from an action's request to its answer, as the caller waited for it.",
    ("kind", "action", "outcome"),
    (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RUN_SECONDS = Histogram(
    "aegir_run_duration_seconds",
    "Time from a run's start to its end, of the runs a worker finished, by operation.",
    ("kind", "operation", "status"),
    (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
HISTOGRAMS = (ACTION_SECONDS, RUN_SECONDS)
SEP = "\x1f"


async def observe(redis: Redis, metric: Histogram, labels: Sequence[str], seconds: float) -> None:
    """Count one observation (one round trip). Never raises: metrics must not fail a run."""
    series = SEP.join(labels)
    bucket = next((str(b) for b in metric.buckets if seconds <= b), "+Inf")
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(metric.key, f"{series}{SEP}{bucket}", 1)
            pipe.hincrby(metric.key, f"{series}{SEP}count", 1)
            pipe.hincrbyfloat(metric.key, f"{series}{SEP}sum", seconds)
            await pipe.execute()
    except Exception:  # redis-py's errors and OSError alike: a lost metric, never a lost run
        logger.debug("metric %s not counted", metric.name, exc_info=True)


# Observations written off their caller's path, held here until done: the event loop
# keeps only a weak reference to a task, and one collected mid-write is a lost count.
_in_flight: set[asyncio.Task[None]] = set()


def observe_soon(redis: Redis, metric: Histogram, labels: Sequence[str], seconds: float) -> None:
    """``observe`` in a task of its own, so that the caller (an action's answer) does not
    wait for the round trip. Never raises; a failure is logged."""
    task = asyncio.create_task(observe(redis, metric, labels, seconds))
    _in_flight.add(task)
    task.add_done_callback(_settled)


@contextlib.contextmanager
def action_timer(redis: Redis, kind: str, action: str) -> Iterator[None]:
    """Time an action, from the API or the dashboard, into ``ACTION_SECONDS``: a failure
    (an exception out of the block) counts as ``error``, and the answer never waits."""
    started = time.monotonic()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        observe_soon(redis, ACTION_SECONDS, (kind, action, outcome), time.monotonic() - started)


def _settled(task: asyncio.Task[None]) -> None:
    _in_flight.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("metric not counted", exc_info=task.exception())


async def drain() -> None:
    """Wait for this event loop's observations still on their way (before the Redis
    client they write with is closed)."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _in_flight if task.get_loop() is loop]
    await asyncio.gather(*mine, return_exceptions=True)


def process_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def set_subscribers(redis: Redis, process: str, count: int) -> None:
    """This API process's number of websocket subscribers; gone with the process (TTL)."""
    await redis.set(SUBSCRIBERS + process, count, ex=SUBSCRIBERS_TTL)


@dataclass
class Snapshot:
    """Everything one scrape shows, read before rendering (the collector is synchronous)."""

    runs_by_status: Mapping[str, int] = field(default_factory=dict)
    queued_runs: int = 0
    oldest_queued_seconds: float = 0.0
    redis_runs_queue: int = 0
    redis_actions_queue: int = 0
    relay_pending: int = 0
    relay_lag: int = 0
    # Open websockets by API process (host-pid): sum() them for the whole system.
    subscribers: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, dict[str, str]] = field(default_factory=dict)


async def read_redis(redis: Redis, snapshot: Snapshot) -> None:
    snapshot.redis_runs_queue = int(await redis.zcard(RUNS_QUEUE))
    snapshot.redis_actions_queue = int(await cast(Awaitable[int], redis.llen(ACTIONS_LIST)))
    try:
        groups = await redis.xinfo_groups(EVENTS_STREAM)
    except ResponseError:  # no stream yet: nothing was ever emitted
        groups = []
    for group in groups:
        name = group.get("name")
        if name in (RELAY_GROUP, RELAY_GROUP.encode()):
            snapshot.relay_pending = int(group.get("pending") or 0)
            snapshot.relay_lag = int(group.get("lag") or 0)
    async for key in redis.scan_iter(match=SUBSCRIBERS + "*", count=500):
        value = await redis.get(key)
        snapshot.subscribers[_text(key).removeprefix(SUBSCRIBERS)] = int(value or 0)
    for metric in HISTOGRAMS:
        raw = await cast(Awaitable[dict[Any, Any]], redis.hgetall(metric.key))
        snapshot.histograms[metric.name] = {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Collector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        runs = GaugeMetricFamily("aegir_runs", "Runs in the database by status.", labels=["status"])
        for status, count in sorted(s.runs_by_status.items()):
            runs.add_metric([status], count)
        yield runs
        yield _gauge("aegir_queue_runs", "Runs waiting for a worker (queued).", s.queued_runs)
        yield _gauge("aegir_queue_oldest_seconds", "Age of the oldest queued run; 0 if none.",
                     s.oldest_queued_seconds)  # fmt: skip
        yield _gauge("aegir_redis_runs_queue", "Run jobs in the Redis queue.", s.redis_runs_queue)
        yield _gauge("aegir_redis_actions_queue", "Actions waiting in Redis for a worker.",
                     s.redis_actions_queue)  # fmt: skip
        yield _gauge("aegir_relay_pending", "Event stream entries read by a relay, not yet "
                     "stored and acknowledged.", s.relay_pending)  # fmt: skip
        yield _gauge("aegir_relay_lag", "Event stream entries no relay has read yet.",
                     s.relay_lag)  # fmt: skip
        sockets = GaugeMetricFamily(
            "aegir_websocket_subscribers",
            "Open websockets (log tails and event feeds) of each API process (sum them).",
            labels=["process"],
        )
        for process, count in sorted(s.subscribers.items()):
            sockets.add_metric([process], count)
        yield sockets
        for metric in HISTOGRAMS:
            yield _histogram(metric, s.histograms.get(metric.name, {}))


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _histogram(metric: Histogram, fields: Mapping[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    for series in sorted({key.rsplit(SEP, 1)[0] for key in fields}):
        labels = series.split(SEP)
        if len(labels) != len(metric.labels):
            continue
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in (*[str(b) for b in metric.buckets], "+Inf"):
            running += float(fields.get(f"{series}{SEP}{bound}", 0))
            buckets.append((bound, running))
        family.add_metric(labels, buckets, float(fields.get(f"{series}{SEP}sum", 0)))
    return family


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry)
