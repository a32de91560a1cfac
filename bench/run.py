"""The Aegir benchmark (``make bench``): the engine's own overhead, on SQLite and on
PostgreSQL.

For each database it starts its own system (Redis, ``aegir serve``, ``aegir worker``,
``aegir relay`` as real processes, on a fresh database migrated with ``alembic upgrade
head``; PostgreSQL is a throwaway server, as the tests start one), measures it against
raw arq and raw Redis Streams in the same Redis, prints each figure beside its
baseline, and writes them at the top of ``bench/RESULTS.md``.

The no-op task and action (``InProcess`` in the test catalogue) go through all that a
command does (claim, lease, events, relay, finish) without a subprocess: they measure
Aegir's own cost. The log and first-line figures still run the test command.

``AEGIR_BENCH_DATABASES=sqlite`` (or ``postgresql``) measures one database only;
``AEGIR_BENCH_QUICK=1`` measures a tenth of the samples, to check the bench itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.arq_worker import NOOP
from bench.cpu import Meter, Profile, profiled
from bench.report import Figure, Report, render_markdown, render_table
from bench.sections import keep_sections
from bench.system import ArqWorkerProcess, BenchStack, Database, machine
from tests.fixtures.catalog import SCRIPT
from tests.fixtures.services import postgres_server

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
QUICK = os.environ.get("AEGIR_BENCH_QUICK") == "1"
DATABASES = tuple(os.environ.get("AEGIR_BENCH_DATABASES", "sqlite,postgresql").split(","))


def scaled(count: int) -> int:
    return max(count // 10, 5) if QUICK else count


# (a) action round trip
ACTION_CALLS = scaled(300)  # the no-op action
COMMAND_ACTION_CALLS = scaled(100)  # the action that runs the test command
ARQ_DEFAULT_CALLS = scaled(10)  # each takes 0.5 to 1 s at arq's default poll delays
WARMUP = 10
SUBPROCESS_SAMPLES = scaled(100)
ARQ_DEFAULT_POLL = 0.5  # arq's defaults: Worker(poll_delay=0.5), Job.result(poll_delay=0.5)
TUNED_WORKER_POLL = 0.005
TUNED_RESULT_POLL = 0.005
# (b) no-op runs per second
ENTITIES = 50
RUNS_PER_ENTITY = scaled(20)
PROFILED_RUNS_PER_ENTITY = scaled(4)  # then once more under py-spy, apart from the figure
ARQ_JOBS = scaled(2000)
POSTERS = 4  # concurrent clients triggering runs (and enqueueing raw jobs)
# A POST answered 5xx under load is counted and reported, then sent again (at most this
# many times), so that one refused trigger does not void the whole figure.
POST_RETRIES = 3
# (c) log lines
LOG_LINES = 200_000 // 10 if QUICK else 200_000
LOG_PAGE = 10_000
XADD_BATCH = 1000
# (d) trigger to first line
FIRST_LINE_RUNS = scaled(50)

PHASE_TIMEOUT = 180.0
POLL_EVERY = 0.05


class BenchError(RuntimeError):
    """The system did not do what was asked; the figure would be meaningless."""


@dataclass
class Bench:
    stack: BenchStack
    http: httpx.AsyncClient
    arq: ArqRedis
    redis: aioredis.Redis
    meter: Meter
    apps: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url


def pct(samples: list[float], p: int) -> float:
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[p - 1]


def ms(seconds: float) -> float:
    return seconds * 1000.0


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# What a user does, over HTTP.


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise BenchError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return response.json()


async def make_app(b: Bench, name: str) -> dict[str, Any]:
    app: dict[str, Any] = expect(await b.http.post("/api/v1/testapps", json={"name": name}), 201)
    return app


def operation_id(app: dict[str, Any], op: str) -> str:
    return str(next(o["id"] for o in app["operations"] if o["type"] == op))


async def trigger(b: Bench, op_id: str, lines: int, retries: int = 0, task: str = "first") -> str:
    """Queue a run of ``lines`` lines (``task``: the operation's task that prints them); a
    server error is counted (``server_errors``), then retried if allowed."""
    body = {"values": {task: {"lines": lines}}}
    for _ in range(retries):
        try:
            response = await b.http.post(f"/api/v1/operations/{op_id}/runs", json=body)
        except httpx.TransportError as error:
            # Dropped: counted like a 5xx. Sent again, it may make one run more than
            # asked, which the count of succeeded runs allows for.
            b.server_errors.append(f"dropped: {error!r}")
            continue
        if response.status_code < 500:
            return str(expect(response, 202)["id"])
        b.server_errors.append(f"{response.status_code} {response.text[:200]}")
    run = expect(await b.http.post(f"/api/v1/operations/{op_id}/runs", json=body), 202)
    return str(run["id"])


async def count_runs(b: Bench, status: str) -> int:
    page = expect(await b.http.get("/api/v1/runs", params={"status": status, "limit": 1}), 200)
    return int(page["total"])


# Raw arq, in the same Redis.


@asynccontextmanager
async def arq_worker(b: Bench, queue: str, poll_delay: float) -> AsyncIterator[None]:
    worker = ArqWorkerProcess(
        b.redis_url, queue, poll_delay, b.stack.root / f"{queue.replace(':', '-')}.log"
    )
    b.meter.add("arq worker", worker.process.pid)
    try:
        # The first round trip waits for the worker process to be up.
        job = await b.arq.enqueue_job(NOOP, _queue_name=queue)
        if job is None:
            raise BenchError("arq refused a job")
        await job.result(timeout=30, poll_delay=0.05)
        yield
    finally:
        b.meter.remove("arq worker")
        await asyncio.to_thread(worker.stop)


async def arq_round_trips(b: Bench, queue: str, calls: int, result_poll: float) -> list[float]:
    samples: list[float] = []
    for index in range(WARMUP + calls):
        start = time.perf_counter()
        job = await b.arq.enqueue_job(NOOP, _queue_name=queue)
        if job is None:
            raise BenchError("arq refused a job")
        await job.result(timeout=30, poll_delay=result_poll)
        if index >= WARMUP:
            samples.append(time.perf_counter() - start)
    return samples


async def run_concurrently(jobs: list[Callable[[], Awaitable[None]]], clients: int) -> None:
    """Each job once, in order, by ``clients`` concurrent callers."""
    queue = list(reversed(jobs))

    async def caller() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(caller() for _ in range(clients)))


async def arq_throughput(
    b: Bench, queue: str, function: str, args: tuple[Any, ...], count: int
) -> float:
    """Jobs per second: enqueue ``count``, until the worker has finished them all."""

    async def enqueue() -> None:
        if await b.arq.enqueue_job(function, *args, _queue_name=queue) is None:
            raise BenchError("arq refused a job")

    start = time.perf_counter()
    await run_concurrently([enqueue] * count, POSTERS)
    deadline = start + PHASE_TIMEOUT
    # A job leaves the queue's sorted set only once finished.
    while await b.arq.zcard(queue) > 0:
        if time.perf_counter() > deadline:
            raise BenchError(f"raw arq: {function} jobs not done in {PHASE_TIMEOUT:g}s")
        await asyncio.sleep(0.002)
    return count / (time.perf_counter() - start)


# (a) action round trip


def command_environment() -> dict[str, str]:
    """What the local executor gives a command (executors/local.py ``_environment``)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


HELLO_ARGV = [sys.executable, SCRIPT, "hello", "--uri=http://bench"]


async def subprocess_starts(count: int) -> list[float]:
    """The action's command alone: create_subprocess_exec, read its output, wait."""
    env = command_environment()
    samples: list[float] = []
    for index in range(WARMUP + count):
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *HELLO_ARGV,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        await process.communicate()
        if process.returncode != 0:
            raise BenchError(f"{HELLO_ARGV} exited with {process.returncode}")
        if index >= WARMUP:
            samples.append(time.perf_counter() - start)
    return samples


async def action_round_trips(b: Bench, app: dict[str, Any], action: str, calls: int) -> list[float]:
    path = f"/api/v1/testapps/{app['id']}/actions/{action}"
    samples: list[float] = []
    for index in range(WARMUP + calls):
        start = time.perf_counter()
        answer = expect(await b.http.post(path), 200)
        elapsed = time.perf_counter() - start
        if not str(answer.get("url", "")).endswith("/one-time-token"):
            raise BenchError(f"unexpected action answer {answer}")
        if index >= WARMUP:
            samples.append(elapsed)
    return samples


NOOP_ACTION_AIM_MS = 5.0


async def figure_a(b: Bench) -> None:
    say(f"(a) bare subprocess start, {SUBPROCESS_SAMPLES} times")
    with b.meter.phase("(a) bare subprocess, run by the bench"):
        spawn = await subprocess_starts(SUBPROCESS_SAMPLES)
    b.facts["subprocess_p50_ms"] = ms(pct(spawn, 50))
    b.facts["subprocess_p95_ms"] = ms(pct(spawn, 95))

    app = await make_app(b, "bench-action")
    say(f"(a) no-op action round trip over HTTP, {ACTION_CALLS} calls")
    with b.meter.phase("(a) Aegir no-op actions"):
        ours = await action_round_trips(b, app, "noop", ACTION_CALLS)
    say(f"(a) action running the command, {COMMAND_ACTION_CALLS} calls")
    with b.meter.phase("(a) Aegir actions running the command"):
        command = await action_round_trips(b, app, "hello", COMMAND_ACTION_CALLS)

    say(f"(a) raw arq round trip, default poll delays, {ARQ_DEFAULT_CALLS} calls")
    async with arq_worker(b, "bench:arq:default", ARQ_DEFAULT_POLL):
        with b.meter.phase("(a) raw arq round trips, default polls"):
            default = await arq_round_trips(
                b, "bench:arq:default", ARQ_DEFAULT_CALLS, ARQ_DEFAULT_POLL
            )
    say(f"(a) raw arq round trip, tuned poll delays, {ACTION_CALLS} calls")
    async with arq_worker(b, "bench:arq:tuned", TUNED_WORKER_POLL):
        with b.meter.phase("(a) raw arq round trips, tuned polls"):
            tuned = await arq_round_trips(b, "bench:arq:tuned", ACTION_CALLS, TUNED_RESULT_POLL)

    for p in (50, 95):
        b.facts[f"action_p{p}_ms"] = ms(pct(ours, p))
        b.facts[f"command_action_p{p}_ms"] = ms(pct(command, p))
        b.facts[f"arq_tuned_p{p}_ms"] = ms(pct(tuned, p))
        b.facts[f"arq_default_p{p}_ms"] = ms(pct(default, p))
    _figures_a(b, len(ours), len(command), len(default), len(spawn))


def _figures_a(b: Bench, calls: int, command_calls: int, default_calls: int, spawns: int) -> None:
    f = b.facts
    for p in (50, 95):
        mine = f[f"action_p{p}_ms"]
        b.figures.append(
            Figure(
                key="a",
                name=f"No-op action round trip p{p}",
                unit="ms",
                ours=mine,
                baseline=f[f"arq_tuned_p{p}_ms"],
                baseline_name=f"raw arq enqueue → job.result, tuned (p{p})",
                aim=f"≤ {NOOP_ACTION_AIM_MS:g} ms" if p == 50 else "",
                met=mine <= NOOP_ACTION_AIM_MS if p == 50 else None,
                higher_is_better=False,
                samples=calls,
            )
        )
    b.figures.append(
        Figure(
            key="a",
            name="No-op action round trip p50, vs arq defaults",
            unit="ms",
            ours=f["action_p50_ms"],
            baseline=f["arq_default_p50_ms"],
            baseline_name="raw arq enqueue → job.result, default polls (p50)",
            aim="",
            met=None,
            higher_is_better=False,
            samples=calls,
            baseline_samples=default_calls,
        )
    )
    for p in (50, 95):
        b.figures.append(
            Figure(
                key="a",
                name=f"Action running the test command, round trip p{p}",
                unit="ms",
                ours=f[f"command_action_p{p}_ms"],
                baseline=f["subprocess_p50_ms"],
                baseline_name="the command alone, started by the bench (p50)",
                aim="",
                met=None,
                higher_is_better=False,
                samples=command_calls,
                baseline_samples=spawns,
            )
        )


# (b) no-op runs per second


async def run_throughput(b: Bench, apps: list[dict[str, Any]], per_entity: int) -> float:
    """Runs per second, from the first POST until the database says all succeeded."""
    before = await count_runs(b, "succeeded")
    failed_before = await count_runs(b, "failed") + await count_runs(b, "lost")
    ops = [operation_id(app, "noop") for app in apps]
    posts: list[float] = []

    async def post(op_id: str) -> None:
        sent = time.perf_counter()
        await trigger(b, op_id, 0, retries=POST_RETRIES, task="noop")
        posts.append(time.perf_counter() - sent)

    def job(op_id: str) -> Callable[[], Awaitable[None]]:
        return lambda: post(op_id)

    jobs = [job(op_id) for _ in range(per_entity) for op_id in ops]
    start = time.perf_counter()
    await run_concurrently(jobs, POSTERS)
    b.facts["runs_posting_s"] = time.perf_counter() - start
    b.facts["runs_post_p50_ms"] = ms(pct(posts, 50))
    b.facts["runs_post_p95_ms"] = ms(pct(posts, 95))
    b.facts["runs_post_errors"] = len(b.server_errors)
    deadline = start + PHASE_TIMEOUT
    while (done := await count_runs(b, "succeeded") - before) < len(jobs):
        if time.perf_counter() > deadline:
            raise BenchError(f"(b): {done} of {len(jobs)} runs succeeded in {PHASE_TIMEOUT:g}s")
        await asyncio.sleep(POLL_EVERY)
    elapsed = time.perf_counter() - start
    if await count_runs(b, "failed") + await count_runs(b, "lost") != failed_before:
        raise BenchError("(b): some runs failed")
    return len(jobs) / elapsed


RUNS_AIM = 200.0  # per second, on PostgreSQL (issue 12)


async def figure_b(b: Bench, database: str) -> None:
    runs = len(b.apps) * RUNS_PER_ENTITY
    say(f"(b) {runs} no-op runs over {len(b.apps)} entities")
    with b.meter.phase("(b) Aegir no-op runs"):
        ours = await run_throughput(b, b.apps, RUNS_PER_ENTITY)
    b.facts["runs_total_s"] = runs / ours
    b.facts["runs_count"] = runs
    say(f"(b) {ARQ_JOBS} raw arq no-op jobs")
    async with arq_worker(b, "bench:arq:throughput", TUNED_WORKER_POLL):
        with b.meter.phase("(b) raw arq no-op jobs"):
            raw = await arq_throughput(b, "bench:arq:throughput", NOOP, (), ARQ_JOBS)
    b.facts["runs_per_s"] = ours
    b.facts["arq_jobs_per_s"] = raw
    profiled_runs = len(b.apps) * PROFILED_RUNS_PER_ENTITY
    say(f"(b) {profiled_runs} more no-op runs, under py-spy (not timed)")
    pids = {name: process.pid for name, process in b.stack.processes.items()}
    with profiled(pids, b.stack.root) as profiles:
        await run_throughput(b, b.apps, PROFILED_RUNS_PER_ENTITY)
    b.profiles = profiles
    b.facts["profiled_runs"] = profiled_runs
    aimed = database == "postgresql"
    b.figures.append(
        Figure(
            key="b",
            name="No-op runs per second, end to end",
            unit="/s",
            ours=ours,
            baseline=raw,
            baseline_name="raw arq no-op jobs per second (tuned worker)",
            aim=f"≥ {RUNS_AIM:.0f}/s on PostgreSQL" if aimed else "",
            met=ours >= RUNS_AIM if aimed else None,
            higher_is_better=True,
            samples=runs,
            detail=(
                f"{len(b.server_errors)} POSTs answered with a server error or dropped and "
                f"were sent again; the first: {b.server_errors[0]}"
                if b.server_errors
                else "every POST answered 202 at the first try"
            ),
        )
    )


# (c) log lines per second


@dataclass
class LogCount:
    received: int = 0
    duplicates: int = 0
    strays: int = 0
    all_at: float | None = None
    end: dict[str, Any] | None = None
    messages: int = 0
    # Live messages carry one relay batch (at most 500 lines); larger ones are pages
    # read back from the database (catch-up after a gap or an overflow).
    large_messages: int = 0


async def follow_log(b: Bench, run_id: str, lines: int, start: float) -> LogCount:
    seen = bytearray(lines + 1)
    count = LogCount()
    async with b.stack.api.websocket(f"/ws/runs/{run_id}?after=0") as ws:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "log":
                count.messages += 1
                count.large_messages += len(message["lines"]) > 500
                for line in message["lines"]:
                    seq = line["seq"]
                    if not 1 <= seq <= lines:
                        count.strays += 1
                    elif seen[seq]:
                        count.duplicates += 1
                    else:
                        seen[seq] = 1
                        count.received += 1
                if count.received == lines and count.all_at is None:
                    count.all_at = time.perf_counter() - start
            elif message["type"] == "end":
                count.end = message
                break
    return count


async def wait_log_complete(b: Bench, run_id: str, start: float) -> float:
    while True:
        run = expect(await b.http.get(f"/api/v1/runs/{run_id}"), 200)
        if run["log_complete"]:
            return time.perf_counter() - start
        if run["status"] in {"failed", "cancelled", "lost"}:
            raise BenchError(f"(c): the run ended {run['status']}: {run.get('error')}")
        await asyncio.sleep(POLL_EVERY)


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def line_at(b: Bench, run_id: str, seq: int) -> float:
    """When the worker read line ``seq`` from the command (wall clock)."""
    params = {"after": seq - 1, "limit": 1}
    page = expect(await b.http.get(f"/api/v1/runs/{run_id}/log", params=params), 200)
    if not page["lines"] or page["lines"][0]["seq"] != seq:
        raise BenchError(f"run {run_id} has no line {seq}")
    return timestamp(page["lines"][0]["at"])


async def stored_lines(b: Bench, run_id: str) -> tuple[int, int]:
    """Lines stored in the database, read back through the API; and duplicates."""
    seqs: set[int] = set()
    total = 0
    after = 0
    for _ in range(LOG_LINES // LOG_PAGE + 10):
        page = expect(
            await b.http.get(
                f"/api/v1/runs/{run_id}/log", params={"after": after, "limit": LOG_PAGE}
            ),
            200,
        )
        if not page["lines"]:
            break
        total += len(page["lines"])
        seqs.update(line["seq"] for line in page["lines"])
        after = page["next_after"]
    return len(seqs), total - len(seqs)


async def xadd_xread(b: Bench, lines: int) -> tuple[float, int]:
    """XADD ``lines`` one-line entries in pipelines while another client XREADs them."""
    key = "bench:xadd-xread"
    writer: aioredis.Redis = aioredis.Redis.from_url(b.redis_url)
    reader: aioredis.Redis = aioredis.Redis.from_url(b.redis_url)
    seen = bytearray(lines + 1)

    async def write() -> None:
        for first in range(1, lines + 1, XADD_BATCH):
            async with writer.pipeline(transaction=False) as pipe:
                for seq in range(first, min(first + XADD_BATCH, lines + 1)):
                    pipe.xadd(key, {"seq": seq, "stream": "stdout", "line": f"line {seq}"})
                await pipe.execute()

    async def read() -> int:
        last = b"0-0"
        received = 0
        while received < lines:
            reply = await reader.xread({key: last}, count=XADD_BATCH, block=1000)
            if not reply:
                raise BenchError("raw XREAD: nothing new for a second")
            for entry_id, fields in reply[0][1]:
                last = entry_id
                seq = int(fields[b"seq"])
                if not seen[seq]:
                    seen[seq] = 1
                    received += 1
        return received

    try:
        await writer.delete(key)
        start = time.perf_counter()
        async with asyncio.timeout(PHASE_TIMEOUT):
            _, received = await asyncio.gather(write(), read())
        elapsed = time.perf_counter() - start
    finally:
        await writer.delete(key)
        await writer.aclose()
        await reader.aclose()
    return lines / elapsed, received


async def figure_c(b: Bench) -> None:
    say(f"(c) one run of {LOG_LINES} log lines, followed on a websocket")
    app = await make_app(b, "bench-log")
    with b.meter.phase("(c) Aegir log, to the database and the websocket"):
        wall, start = time.time(), time.perf_counter()
        # The command prints N - 1 stdout lines and one stderr line: N lines in all.
        run_id = await trigger(b, operation_id(app, "run"), LOG_LINES - 1)
        stored = asyncio.create_task(wait_log_complete(b, run_id, start))
        async with asyncio.timeout(PHASE_TIMEOUT):
            count = await follow_log(b, run_id, LOG_LINES, start)
            to_db = await stored
    in_db, db_duplicates = await stored_lines(b, run_id)
    b.facts["log_first_read_s"] = await line_at(b, run_id, 1) - wall
    # The stderr line may come before or after the last stdout line: the later of two.
    last_read = max(await line_at(b, run_id, LOG_LINES), await line_at(b, run_id, LOG_LINES - 1))
    b.facts["log_last_read_s"] = last_read - wall
    b.facts["log_ws_messages"] = count.messages
    b.facts["log_ws_large_messages"] = count.large_messages
    end = count.end or {}
    lost = LOG_LINES - count.received
    say(
        f"(c) websocket: {count.received} distinct, {count.duplicates} duplicates, "
        f"{count.strays} out of range; database: {in_db} distinct, {db_duplicates} duplicates"
    )
    say(f"(c) raw XADD → XREAD of {LOG_LINES} entries")
    with b.meter.phase("(c) raw XADD → XREAD"):
        raw, raw_received = await xadd_xread(b, LOG_LINES)
    # None lost: every seq once on the websocket, all N stored (and log_complete, which
    # wait_log_complete waited for). The end message's own "complete" is reported apart.
    intact = (
        count.received == LOG_LINES
        and count.duplicates == 0
        and count.strays == 0
        and in_db == LOG_LINES
        and db_duplicates == 0
        and end.get("status") == "succeeded"
    )
    ws_rate = LOG_LINES / count.all_at if count.all_at else 0.0
    db_rate = LOG_LINES / to_db
    b.facts.update(
        log_ws_s=count.all_at or 0.0,
        log_db_s=to_db,
        log_ws_received=count.received,
        log_ws_duplicates=count.duplicates,
        log_db_stored=in_db,
        log_lost=lost,
        log_intact=float(intact),
        log_end_complete=float(end.get("complete") is True),
        xadd_xread_per_s=raw,
    )
    checks = {
        "to the websocket subscriber": f"{count.received:,} of {LOG_LINES:,} seqs received, "
        f"{count.duplicates} twice, {count.strays} out of range; the end message said "
        f"status={end.get('status')}, complete={end.get('complete')}, "
        f"last_seq={end.get('last_seq')}",
        "into the database": f"{in_db:,} distinct lines read back through "
        f"GET /api/v1/runs/{{id}}/log, {db_duplicates} duplicates; log_complete became true",
    }
    for name, rate in (("to the websocket subscriber", ws_rate), ("into the database", db_rate)):
        b.figures.append(
            Figure(
                key="c",
                name=f"Log lines per second {name}",
                unit="/s",
                ours=rate,
                baseline=raw,
                baseline_name=f"raw XADD → XREAD, one line per entry ({raw_received:,} read)",
                aim="≥ 50,000/s, none lost",
                met=intact and rate >= 50_000,
                higher_is_better=True,
                samples=LOG_LINES,
                detail=checks[name],
            )
        )


# (d) trigger to first line


STAGES = (
    "POST → run row written",
    "run row → claimed by the worker",
    "claimed → first line read from the command",
    "line read → on the websocket",
)


async def first_line(b: Bench, app: dict[str, Any]) -> tuple[float, str, float]:
    """Seconds from just before the POST to the first log message; the run, the start."""
    wall, start = time.time(), time.perf_counter()
    run_id = await trigger(b, operation_id(app, "run"), 1)
    first: float | None = None
    async with asyncio.timeout(30), b.stack.api.websocket(f"/ws/runs/{run_id}") as ws:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "log" and first is None:
                first = time.perf_counter() - start
            elif message["type"] == "end":
                if message["status"] != "succeeded":
                    raise BenchError(f"(d): run {run_id} ended {message['status']}")
                break
    if first is None:
        raise BenchError(f"(d): run {run_id} ended without a log line")
    return first, run_id, wall


async def stages(b: Bench, run_id: str, wall: float, first: float) -> list[float]:
    """Where the time to the first line went, from the timestamps Aegir stores."""
    run = expect(await b.http.get(f"/api/v1/runs/{run_id}"), 200)
    created, started = timestamp(run["created_at"]), timestamp(run["started_at"])
    read = await line_at(b, run_id, 1)
    return [created - wall, started - created, read - started, wall + first - read]


FIRST_LINE_AIM_MS = 50.0  # beyond the bare command, p95


async def figure_d(b: Bench) -> None:
    say(f"(d) trigger → first log line on the websocket, {FIRST_LINE_RUNS} runs")
    with b.meter.phase("(d) Aegir first lines"):
        runs = [await first_line(b, b.apps[i % len(b.apps)]) for i in range(FIRST_LINE_RUNS)]
    samples = [first for first, _, _ in runs]
    parts = [await stages(b, run_id, wall, first) for first, run_id, wall in runs]
    for index, stage in enumerate(STAGES):
        b.stages[stage] = ms(statistics.median(part[index] for part in parts))
    command = b.facts["subprocess_p50_ms"]
    for p in (50, 95):
        b.facts[f"first_line_p{p}_ms"] = ms(pct(samples, p))
        b.figures.append(
            Figure(
                key="d",
                name=f"Trigger → first log line p{p}, less the bare command",
                unit="ms",
                ours=ms(pct(samples, p)) - command,
                baseline=b.facts["arq_tuned_p50_ms"],
                baseline_name="tuned arq round trip p50 (the bare command's p50, "
                f"{command:.1f} ms, is taken off Aegir's figure)",
                aim=f"≤ {FIRST_LINE_AIM_MS:g} ms" if p == 95 else "",
                met=ms(pct(samples, p)) - command <= FIRST_LINE_AIM_MS if p == 95 else None,
                higher_is_better=False,
                samples=len(samples),
            )
        )


# The whole run.


async def measure(stack: BenchStack, db: Database) -> Report:
    arq = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    redis: aioredis.Redis = aioredis.Redis.from_url(stack.redis_url)
    try:
        async with stack.api.http() as http:
            meter = Meter({name: process.pid for name, process in stack.processes.items()})
            if stack.redis.process is not None:
                meter.add("redis", stack.redis.process.pid)
            b = Bench(stack=stack, http=http, arq=arq, redis=redis, meter=meter)
            say(f"creating {ENTITIES} entities")
            b.apps = [await make_app(b, f"bench-{n:02d}") for n in range(ENTITIES)]
            started = time.perf_counter()
            await figure_a(b)
            await figure_d(b)
            await figure_b(b, db.kind)
            await figure_c(b)
            return Report(
                date=datetime.now(UTC),
                machine=await machine(redis),
                database=db.kind,
                figures=b.figures,
                facts=b.facts,
                stages=b.stages,
                phases=meter.phases,
                seconds=time.perf_counter() - started,
                settings=settings_text(),
                profiles=b.profiles,
            )
    finally:
        await arq.aclose()
        await redis.aclose()


def settings_text() -> dict[str, str]:
    return {
        "tuned arq": f"Worker(poll_delay={TUNED_WORKER_POLL}), "
        f"job.result(poll_delay={TUNED_RESULT_POLL})",
        "default arq": f"Worker(poll_delay={ARQ_DEFAULT_POLL}), job.result() "
        f"(poll_delay={ARQ_DEFAULT_POLL})",
        "action calls": f"{ACTION_CALLS} no-op actions (in-process task) and "
        f"{COMMAND_ACTION_CALLS} running the test command (raw arq at default polls: "
        f"{ARQ_DEFAULT_CALLS}), after {WARMUP} warm-up calls each",
        "runs": f"{ENTITIES} entities x {RUNS_PER_ENTITY} no-op runs (in-process task), "
        f"posted by {POSTERS} concurrent clients; raw arq: {ARQ_JOBS} no-op jobs, enqueued "
        f"by {POSTERS} concurrent clients, max_jobs=10 like Aegir's worker",
        "log": f"{LOG_LINES:,} lines in one run of the test command; raw: XADD pipelines "
        f"of {XADD_BATCH}, XREAD count={XADD_BATCH}",
        "first line": f"{FIRST_LINE_RUNS} runs of the test command with lines=1, one at a "
        "time, on idle entities",
    }


def measure_on(database: str) -> Report:
    """Start a system on a fresh ``database`` ("sqlite" or "postgresql") and measure it."""
    with contextlib.ExitStack() as stack:
        if database == "postgresql":
            say("starting a throwaway PostgreSQL server")
            db = Database(stack.enter_context(postgres_server()))
        else:
            db = Database(sqlite=True)
        stack.callback(db.remove)
        say(f"migrating a fresh {db.kind} database")
        db.migrate()
        system = BenchStack(db.url)
        stack.callback(system.stop)
        say("starting Redis, aegir serve, aegir worker, aegir relay")
        system.start()
        return asyncio.run(measure(system, db))


def main() -> int:
    reports: list[Report] = []
    try:
        for database in DATABASES:
            reports.append(measure_on(database))
    except BenchError as error:
        say(f"failed: {error} (AEGIR_KEEP_STACK=1 keeps the processes' logs)")
        return 1
    for report in reports:
        print(f"\n{report.database}:\n{render_table(report)}")
    RESULTS.write_text(keep_sections(render_markdown(reports)))
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
