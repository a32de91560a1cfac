"""Fan-out and memory at scale (``python -m bench.fanout``), issue 14, item 4.

(a) One run's log to ``--subscribers`` websocket clients of one API process: does every
    client get every line, in order, once; how long from a line's emission (the worker
    reading it from the command) to the last client's receipt; the API's RSS before,
    at its peak and after; the Redis connections the API holds meanwhile.
(b) ``--runs`` short runs through one worker (the test catalogue, a few lines each, over
    many entities, posted by bounded concurrent clients that keep a bounded number of
    runs in flight): the RSS of worker, relay and API, idle, after the first 1,000 runs
    (the warm-up) and after the last; the growth in between.

Each part starts a fresh system (``BenchStack``: Redis, ``aegir serve``, one worker, one
relay, as processes) on a fresh SQLite database (or ``AEGIR_BENCH_DATABASE_URL``), and
writes its figures to the ``fanout`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import redis.asyncio as aioredis

from app.entities.run import states
from bench.sections import write_section
from bench.system import BenchStack, Database, code_version, cpu_model
from tests.fixtures.processes import redis_clients_of, rss_kib

SUBSCRIBERS = 1000
LINES = 20_000
PACE = 0.0005  # seconds the command waits after each line
HANDSHAKES = 50  # websocket handshakes at once
SAMPLE_EVERY = 100  # the latency is measured on every 100th line
READ_TIMEOUT = 900.0  # seconds for every subscriber to have its end
RUNS = 10_000
WARMUP_RUNS = 1_000
ENTITIES = 100
POSTERS = 20  # concurrent clients posting runs
IN_FLIGHT = 50  # runs posted and not yet ended, at most
RUN_LINES = 3
SETTLE = 3.0  # seconds of quiet before an RSS reading

# What was found about the worker's growth (2026-11-27), measured apart from this bench.
WORKER_GROWTH = (
    "Where the worker's growth is (measured apart): not in Python objects. A worker run "
    "inside a process under `tracemalloc` traced +10 KB over 1,500 runs after 300 warm-up "
    "runs, while its RSS grew. With `MALLOC_ARENA_MAX=2` in the worker's environment, "
    "its RSS grew +5.2 % from 1,000 to 5,500 runs, by less each time (+2.6, +1.4, +0.9 MiB "
    "per 1,500 runs). Likely glibc's per-thread malloc arenas: on Python 3.11, asyncio "
    "starts a thread to wait for each command (`ThreadedChildWatcher`). Not confirmed "
    "over 10,000 runs."
)


class BenchError(RuntimeError):
    """The system did not do what was asked; the figure would be meaningless."""


def say(text: str) -> None:
    print(f"bench.fanout: {text}", file=sys.stderr, flush=True)


def pct(samples: list[float], p: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[p - 1]


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise BenchError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json()


async def make_app(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    app: dict[str, Any] = expect(await http.post("/api/v1/testapps", json={"name": name}), 201)
    return app


def operation_id(app: dict[str, Any], op: str) -> str:
    return str(next(o["id"] for o in app["operations"] if o["type"] == op))


async def trigger(http: httpx.AsyncClient, op_id: str, values: dict[str, Any]) -> tuple[str, int]:
    """Post a run; a 5xx (or 503) is sent again, and counted: answers the run id and count."""
    refused = 0
    while True:
        response = await http.post(f"/api/v1/operations/{op_id}/runs", json={"values": values})
        if response.status_code < 500 or refused >= 10:
            return str(expect(response, 202)["id"]), refused
        refused += 1
        await asyncio.sleep(float(response.headers.get("retry-after", "0.5")))


async def run_status(http: httpx.AsyncClient, run_id: str) -> str:
    return str(expect(await http.get(f"/api/v1/runs/{run_id}"), 200)["status"])


async def wait_status(http: httpx.AsyncClient, run_id: str, statuses: set[str]) -> None:
    deadline = time.monotonic() + 120
    while await run_status(http, run_id) not in statuses:
        if time.monotonic() > deadline:
            raise BenchError(f"run {run_id} never reached {statuses}")
        await asyncio.sleep(0.1)


# (a) One run's log to many subscribers.


@dataclass
class Tail:
    """One subscriber's view, checked as it comes."""

    received: int = 0
    messages: int = 0  # log messages: frames of one line or of many
    first_at: float = 0.0
    last_at: float = 0.0
    end_at: float = 0.0
    last: int = 0
    disorder: int = 0  # lines whose seq was not the one after the last
    end: dict[str, Any] | None = None
    error: str | None = None
    open: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, message: dict[str, Any], latest: dict[int, float]) -> None:
        now = time.time()
        if message["type"] == "end":
            self.end, self.end_at = message, now
        if message["type"] != "log":
            return
        self.started.set()
        self.messages += 1
        self.first_at = self.first_at or now
        self.last_at = now
        for line in message["lines"]:
            seq = line["seq"]
            self.disorder += seq != self.last + 1
            self.last = seq
            self.received += 1
            if seq % SAMPLE_EVERY == 0 and latest.get(seq, 0.0) < now:
                latest[seq] = now


async def follow(
    stack: BenchStack, run_id: str, tail: Tail, gate: asyncio.Semaphore, latest: dict[int, float]
) -> None:
    try:
        async with gate:
            socket = await stack.api.websocket(f"/ws/runs/{run_id}", open_timeout=60)
        tail.open.set()
        async with socket:
            async for raw in socket:
                tail.take(json.loads(raw), latest)
    except Exception as error:  # reported, not raised: one failure must not hide the rest
        tail.error = f"{type(error).__name__}: {error}"
    finally:
        tail.open.set()
        tail.started.set()


class RssSampler:
    """A thread reading a process's RSS every 0.1 s, keeping the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _sample(self) -> None:
        while not self.stopping.wait(0.1):
            self.peak = max(self.peak, rss_kib(self.pid))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_idle(pid: int, busy: float = 0.05, limit: float = 600) -> float:
    """When the process used less than ``busy`` of a CPU over a second."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(1)
        if cpu_seconds(pid) - before < busy:
            return time.monotonic() - 1
    raise BenchError(f"the API was still busy after {limit:g} s")


async def api_connections(stack: BenchStack) -> list[dict[str, Any]]:
    redis = aioredis.Redis(port=stack.redis_port)
    try:
        clients = await redis.client_list()
    finally:
        await redis.aclose()
    return redis_clients_of(stack.processes["api"].pid, stack.redis_port, clients)


async def emitted_at(http: httpx.AsyncClient, run_id: str) -> tuple[int, dict[int, float]]:
    """The stored line count, and when each sampled line was emitted (worker's clock)."""
    at: dict[int, float] = {}
    after = total = 0
    while True:
        params = {"after": after, "limit": 10_000}
        page = expect(await http.get(f"/api/v1/runs/{run_id}/log", params=params), 200)
        if not page["lines"]:
            return total, at
        total += len(page["lines"])
        for line in page["lines"]:
            if line["seq"] % SAMPLE_EVERY == 0:
                at[line["seq"]] = datetime.fromisoformat(line["at"]).timestamp()
        after = page["next_after"]


async def fanout(stack: BenchStack, subscribers: int, lines: int, pace: float) -> dict[str, Any]:
    api = stack.processes["api"].pid
    async with stack.api.http(timeout=120) as http:
        app = await make_app(http, "fanout")
        # A run holding the entity, so that the measured one waits, queued, while the
        # subscribers connect: every line then comes live.
        hold = {"first": {"lines": 0, "sleep": 600}}
        blocker, _ = await trigger(http, operation_id(app, "run"), hold)
        await wait_status(http, blocker, {"running"})
        # Every value given: a task instance keeps the values of its last run.
        values = {"first": {"lines": lines, "pace": pace, "sleep": 0}}
        run_id, _ = await trigger(http, operation_id(app, "run"), values)
        before = rss_kib(api)
        tails = [Tail() for _ in range(subscribers)]
        latest: dict[int, float] = {}
        gate = asyncio.Semaphore(HANDSHAKES)
        started = time.monotonic()
        with RssSampler(api) as sampler:
            say(f"(a) connecting {subscribers} subscribers")
            readers = [
                asyncio.create_task(follow(stack, run_id, tail, gate, latest)) for tail in tails
            ]
            await asyncio.gather(*(tail.open.wait() for tail in tails))
            # Open is not ready: each then signs in, loads the run, subscribes and reads
            # the (empty) log; ready when the API has nothing left to do.
            ready = await wait_idle(api) - started
            say(f"(a) all connected and ready after {ready:.1f} s; the run starts: {lines} lines")
            expect(await http.post(f"/api/v1/runs/{blocker}/cancel"), 202)
            await asyncio.gather(*(tail.started.wait() for tail in tails))
            connections = await api_connections(stack)
            _done, unfinished = await asyncio.wait(readers, timeout=READ_TIMEOUT)
            for reader in unfinished:
                reader.cancel()
        await asyncio.sleep(SETTLE)
        after = rss_kib(api)
        stored, at = await emitted_at(http, run_id)
    delays = [latest[seq] - at[seq] for seq in at if seq in latest]
    first = min(at.values())
    for what in ("first_at", "last_at", "end_at"):
        times = sorted(getattr(t, what) - first for t in tails)
        say(
            f"(a) {what} after the first line's emission: min {times[0]:.1f} s, "
            f"median {times[len(times) // 2]:.1f} s, max {times[-1]:.1f} s"
        )
    say(f"(a) the last sampled line emitted {max(at.values()) - first:.1f} s after the first")
    return {
        "subscribers": subscribers,
        "lines": lines,
        "pace": pace,
        "stored": stored,
        "complete": sum(t.received == stored and not t.disorder for t in tails),
        "ended": sum(t.end is not None and t.end["complete"] is True for t in tails),
        "disorder": sum(t.disorder for t in tails),
        "errors": sorted({t.error for t in tails if t.error}),
        "unfinished": len(unfinished),
        "p50": pct(delays, 50) if delays else float("nan"),
        "p95": pct(delays, 95) if delays else float("nan"),
        "samples": len(delays),
        "ready": ready,
        "frames": statistics.mean(t.messages for t in tails),
        "rss_before": before,
        "rss_peak": sampler.peak,
        "rss_after": after,
        "connections": len(connections),
        "subscribed": sum(int(c["sub"]) > 0 for c in connections),
    }


# (b) Many short runs through one worker.


@dataclass
class Flow:
    """Runs posted and not yet seen ending, bounded by a semaphore."""

    http: httpx.AsyncClient
    room: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))
    outstanding: set[str] = field(default_factory=set)
    ended_early: set[str] = field(default_factory=set)  # its end came before its POST's answer
    ended: int = 0
    failed: int = 0
    refused: int = 0

    def end(self, run_id: str, status: str) -> None:
        if run_id in self.outstanding:
            self.outstanding.discard(run_id)
            self.ended += 1
            self.failed += status != "succeeded"
            self.room.release()
        else:
            self.ended_early.add(run_id)

    def posted(self, run_id: str, refused: int) -> None:
        self.refused += refused
        self.outstanding.add(run_id)
        if run_id in self.ended_early:
            self.ended_early.discard(run_id)
            self.end(run_id, "succeeded")

    async def recheck(self) -> None:
        """After a resync (missed events), ask the API about the runs in flight."""
        for run_id in list(self.outstanding):
            status = await run_status(self.http, run_id)
            if status in states.FINAL:
                self.end(run_id, status)

    async def drain(self) -> None:
        deadline = time.monotonic() + 300
        while self.outstanding:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(self.outstanding)} runs never ended")
            await asyncio.sleep(1)
            await self.recheck()


async def listen(stack: BenchStack, flow: Flow) -> None:
    async with stack.api.websocket("/ws/events") as socket:
        async for raw in socket:
            message = json.loads(raw)
            if message.get("type") == "resync":
                await flow.recheck()
            elif message.get("status") in states.FINAL:
                flow.end(str(message["run"]), str(message["status"]))


async def post_runs(flow: Flow, apps: list[dict[str, Any]], first: int, last: int) -> None:
    """Runs ``first`` to ``last - 1``, entity by entity in turn, by POSTERS clients."""
    numbers = iter(range(first, last))
    values = {"first": {"lines": RUN_LINES}}

    async def poster() -> None:
        for number in numbers:
            await flow.room.acquire()
            app = apps[number % len(apps)]
            flow.posted(*await trigger(flow.http, operation_id(app, "run"), values))

    await asyncio.gather(*(poster() for _ in range(POSTERS)))
    await flow.drain()


async def rss_of(stack: BenchStack) -> dict[str, int]:
    await asyncio.sleep(SETTLE)
    return {name: rss_kib(stack.processes[name].pid) for name in ("worker", "relay", "api")}


async def many_runs(stack: BenchStack, runs: int, warmup: int) -> dict[str, Any]:
    # RSS after the warm-up, then at thirds of the rest: a cache filling levels off,
    # a leak goes on.
    marks = [warmup + (runs - warmup) * third // 3 for third in range(4)]
    async with stack.api.http(timeout=120) as http:
        apps = [await make_app(http, f"runs-{n:03d}") for n in range(ENTITIES)]
        flow = Flow(http)
        listener = asyncio.create_task(listen(stack, flow))
        await asyncio.sleep(1)
        started = time.perf_counter()
        samples: list[tuple[int, dict[str, int]]] = []
        for first, last in zip([0, *marks], marks, strict=False):
            await post_runs(flow, apps, first, last)
            samples.append((last, await rss_of(stack)))
            say(f"(b) after {last} runs: {samples[-1][1]}")
        seconds = time.perf_counter() - started - len(marks) * SETTLE
        listener.cancel()
    return {
        "runs": runs,
        "warmup": warmup,
        "ended": flow.ended,
        "failed": flow.failed,
        "refused": flow.refused,
        "seconds": seconds,
        "samples": samples,
    }


# The report.


def growth(before: int, after: int) -> float:
    return (after - before) / before * 100


def fanout_markdown(a: dict[str, Any]) -> str:
    n = a["subscribers"]
    ok = a["complete"] == n and a["ended"] == n and not a["errors"]
    lines = [
        f"### One run's log to {n:,} websocket subscribers (issue 14)",
        "",
        f"{a['lines']:,} lines (plus the command's last line to stderr), one every "
        f"{a['pace'] * 1000:g} ms at most, {a['stored']:,} stored; all {n:,} subscribers on "
        "one API process, connected before the run started.",
        "",
        "| Figure | Measured | Aim |",
        "|---|---|---|",
        f"| subscribers that got every line, in order, once, then `end` (complete) | "
        f"{min(a['complete'], a['ended']):,} of {n:,} | all {'✅' if ok else '❌'} |",
        f"| emission to the last subscriber's receipt, p50 | {a['p50'] * 1000:,.0f} ms "
        f"| (over {a['samples']} sampled lines) |",
        f"| emission to the last subscriber's receipt, p95 | {a['p95'] * 1000:,.0f} ms | |",
        f"| from the first handshake to every subscriber signed in, subscribed and caught up "
        f"(the API idle again) | {a['ready']:,.1f} s | |",
        f"| log frames per subscriber (mean; lines are merged for a client behind) | "
        f"{a['frames']:,.0f} | |",
        f"| API RSS before / peak / after (settled {SETTLE:g} s) | {mib(a['rss_before'])} / "
        f"{mib(a['rss_peak'])} / {mib(a['rss_after'])} | bounded |",
        f"| Redis connections of the API while streaming (subscribed) | "
        f"{a['connections']} ({a['subscribed']}) | 1 subscription, not {n:,} "
        f"{'✅' if a['subscribed'] == 1 else '❌'} |",
    ]
    if a["errors"]:
        lines += ["", "Subscriber errors: " + "; ".join(a["errors"][:5])]
    if a["unfinished"]:
        lines += ["", f"{a['unfinished']} subscribers had no end after {READ_TIMEOUT:g} s."]
    return "\n".join(lines)


def runs_markdown(b: dict[str, Any]) -> str:
    samples: list[tuple[int, dict[str, int]]] = b["samples"]
    rows = []
    for name in ("worker", "relay", "api"):
        change = growth(samples[0][1][name], samples[-1][1][name])
        rss = " | ".join(mib(sample[name]) for _count, sample in samples)
        rows.append(f"| {name} | {rss} | {change:+.1f} % {'✅' if change < 10 else '❌'} |")
    counts = " | ".join(f"RSS at {count:,}" for count, _sample in samples)
    return "\n".join(
        [
            f"### {b['runs']:,} runs through one worker (issue 14)",
            "",
            f"Runs of {RUN_LINES} lines over {ENTITIES} entities, posted by {POSTERS} "
            f"concurrent clients with at most {IN_FLIGHT} in flight: {b['ended']:,} ended "
            f"({b['failed']} not succeeded), {b['refused']} POSTs answered 5xx and sent "
            f"again, {b['runs'] / b['seconds']:.1f} runs/s. RSS read idle ({SETTLE:g} s "
            f"after the last run ended), after the {b['warmup']:,} warm-up runs, then at "
            "each third of the rest.",
            "",
            f"| Process | {counts} | Growth after the warm-up (aim < 10 %) |",
            "|---|" + "---|" * (len(samples) + 1),
            *rows,
            "",
            WORKER_GROWTH,
        ]
    )


def header(database: str) -> str:
    return (
        f"## Fan-out and memory (`python -m bench.fanout`)\n\n"
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, code {code_version()}, {database}, "
        f"{cpu_model()}. The machine was shared with other work while this ran: "
        "times are not clean figures."
    )


# Running it.


def more_files() -> None:
    """1,000 websockets are 1,000 descriptors, here and in the API (which inherits it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def on_fresh_system(measure: Any) -> tuple[str, dict[str, Any]]:
    db = Database()
    db.migrate()
    stack = BenchStack(db.url)
    try:
        stack.start()
        return db.kind, asyncio.run(measure(stack))
    finally:
        stack.stop()
        db.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--pace", type=float, default=PACE)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--warmup", type=int, default=WARMUP_RUNS)
    parser.add_argument("--only", choices=("fanout", "runs"))
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md")
    args = parser.parse_args(argv)
    more_files()
    parts: list[str] = []
    database = ""
    try:
        if args.only != "runs":
            say("(a) starting a fresh system")
            database, a = on_fresh_system(
                lambda stack: fanout(stack, args.subscribers, args.lines, args.pace)
            )
            say(f"(a) {a}")
            parts.append(fanout_markdown(a))
        if args.only != "fanout":
            say("(b) starting a fresh system")
            database, b = on_fresh_system(lambda stack: many_runs(stack, args.runs, args.warmup))
            say(f"(b) {b}")
            parts.append(runs_markdown(b))
    except BenchError as error:
        say(f"failed: {error} (AEGIR_KEEP_STACK=1 keeps the processes' logs)")
        return 1
    markdown = "\n\n".join([header(database), *parts])
    print(markdown)
    if not args.no_write:
        write_section("fanout", markdown)
        say("wrote the fanout section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
