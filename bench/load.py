"""Writes under load (issue 14, item 4): many clients asking for runs at once.

``python -m bench.load``: for SQLite (the embedded default) and PostgreSQL, start the
whole system (Redis, ``aegir serve``, ``aegir worker``, ``aegir relay``), then 1,000 run
requests over 100 entities from 50 concurrent clients, each with its own keep-alive
connection. A 503 is waited out as its ``Retry-After`` says, then sent again, as a
well-behaved client does; a 500 or a dropped connection is counted and not sent again
(a POST whose answer was lost may have been committed). Then wait until every accepted
run has ended and its log is complete, and check each log and each entity's order.

The figures go to ``bench/RESULTS.md`` (section ``load``). ``--save`` keeps them as
JSON; ``--before`` shows such a file beside the new figures (the code before a change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.entities.run import states
from bench.client import Api
from bench.cpu import Meter
from bench.sections import write_section
from bench.system import BenchStack, Database, code_version, cpu_model
from tests.fixtures.services import alembic_upgrade, postgres_server

REQUESTS = 1000
ENTITIES = 100
CLIENTS = 50
LINES = 5  # stdout lines per run; the command adds one on stderr
RETRIES_503 = 20
RETRY_AFTER_CAP = 5.0

SETTLE_TIMEOUT = 900.0
# What the processes' logs say when a write failed on the lock, or a request failed.
TIMES = "\u00d7"  # the multiplication sign, as in "3 times 202"
LOG_MARKERS = (
    "database is locked",
    "execute_run failed",
    "end not recorded",
    "lease not renewed",
    "Exception in ASGI application",
    "answered 500",
)


def say(text: str) -> None:
    print(f"bench.load: {text}", file=sys.stderr, flush=True)


@dataclass
class Answer:
    status: int | None  # None: the connection dropped, no answer
    seconds: float
    retry_after: bool = False
    error: str = ""


@dataclass
class Figures:
    """What one database gave; ``--save`` writes these as JSON."""

    database: str
    requests: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    server_errors: int = 0  # any 5xx but a 503 with Retry-After
    refused: int = 0  # 503 with Retry-After: sent again after the wait it said
    accepted: int = 0
    post_p50_ms: float = 0.0
    post_p95_ms: float = 0.0
    post_max_ms: float = 0.0
    posting_s: float = 0.0
    wall_s: float = 0.0
    runs_per_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    complete: int = 0
    intact_logs: int = 0
    entities: int = 0
    ordered_entities: int = 0
    log_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # CPU seconds by process while posting, and over the whole wall time.
    cpu_posting: dict[str, float] = field(default_factory=dict)
    cpu_wall: dict[str, float] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)


def pct(samples: list[float], p: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[p - 1]


# Posting.


async def post_run(http: httpx.AsyncClient, op_id: str, answers: list[Answer]) -> str | None:
    """One run request, sent again after each 503 as its Retry-After says."""
    body = {"values": {"first": {"lines": LINES}}}
    for _ in range(RETRIES_503):
        start = time.perf_counter()
        try:
            response = await http.post(f"/api/v1/operations/{op_id}/runs", json=body)
        except httpx.TransportError as error:
            answers.append(Answer(None, time.perf_counter() - start, error=repr(error)))
            return None
        wait = response.headers.get("retry-after")
        answer = Answer(response.status_code, time.perf_counter() - start, wait is not None)
        answers.append(answer)
        if response.status_code == 202:
            return str(response.json()["id"])
        answer.error = f"{response.status_code} {response.text[:300]}"
        if response.status_code != 503 or wait is None:
            return None
        await asyncio.sleep(min(float(wait), RETRY_AFTER_CAP))
    return None


async def post_all(api: Api, ops: list[str], clients: int) -> tuple[list[Answer], list[str]]:
    """Every request once, by ``clients`` concurrent clients, each its own connection."""
    pending = list(reversed(ops))
    answers: list[Answer] = []
    accepted: list[str] = []

    async def client() -> None:
        async with api.http(timeout=120) as http:
            while pending:
                run_id = await post_run(http, pending.pop(), answers)
                if run_id is not None:
                    accepted.append(run_id)

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers, accepted


# Waiting and checking.


async def count(http: httpx.AsyncClient, status: str) -> int:
    page = await http.get("/api/v1/runs", params={"status": status, "limit": 1})
    page.raise_for_status()
    return int(page.json()["total"])


async def wait_ended(http: httpx.AsyncClient, expected: int) -> dict[str, int]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        statuses = {str(s): await count(http, s) for s in sorted(states.FINAL)}
        if sum(statuses.values()) >= expected or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.5)


async def gather_limited(calls: list[Any], limit: int = 8) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


async def settled_run(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once its log is complete (or as it is, when that never comes)."""
    deadline = time.monotonic() + 60
    while True:
        response = await http.get(f"/api/v1/runs/{run_id}")
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        if run["log_complete"] or time.monotonic() > deadline:
            return run
        await asyncio.sleep(0.2)


async def log_intact(http: httpx.AsyncClient, run_id: str) -> bool:
    """Every line the command printed, stored once, numbered 1..n without a gap."""
    response = await http.get(f"/api/v1/runs/{run_id}/log", params={"limit": 10000})
    response.raise_for_status()
    lines = response.json()["lines"]
    seqs = [line["seq"] for line in lines]
    printed = [line["line"] for line in lines if line["stream"] == "stdout"]
    expected = [f"line {n}" for n in range(1, LINES + 1)]
    return seqs == list(range(1, len(seqs) + 1)) and printed == expected


def ordered(runs: list[dict[str, Any]]) -> tuple[int, int]:
    """Entities whose runs started in the order they were requested; entities."""
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_entity.setdefault(run["entity_id"], []).append(run)
    kept = 0
    for mine in by_entity.values():
        mine.sort(key=lambda run: run["created_at"])
        started = [run["started_at"] for run in mine]
        if None not in started and started == sorted(started):
            kept += 1
    return kept, len(by_entity)


def log_counts(stack: BenchStack) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for name in stack.processes:
        text = stack.log(name)
        found[name] = {marker: text.count(marker) for marker in LOG_MARKERS if marker in text}
    return found


# One database.


async def measure(
    stack: BenchStack, kind: str, requests: int, entities: int, clients: int
) -> Figures:
    api = stack.api
    figures = Figures(database=kind, requests=requests)
    async with api.http(timeout=60) as http:
        say(f"{kind}: creating {entities} entities")
        apps = [
            (await http.post("/api/v1/testapps", json={"name": f"load-{n:03d}"})).json()
            for n in range(entities)
        ]
        run_ops = [next(o["id"] for o in app["operations"] if o["type"] == "run") for app in apps]
        ops = [run_ops[n % entities] for n in range(requests)]
        say(f"{kind}: {requests} run requests from {clients} clients")
        meter = Meter({name: process.pid for name, process in stack.processes.items()})
        start = time.perf_counter()
        with meter.phase("wall"):
            with meter.phase("posting"):
                answers, accepted = await post_all(api, ops, clients)
            figures.posting_s = time.perf_counter() - start
            say(f"{kind}: posted in {figures.posting_s:.1f} s; waiting for every run to end")
            figures.statuses = await wait_ended(http, len(accepted))
            runs = await gather_limited([settled_run(http, run_id) for run_id in accepted])
        figures.wall_s = time.perf_counter() - start
        posting, wall = meter.phases
        figures.cpu_posting, figures.cpu_wall = posting.cpu, wall.cpu
        intact = await gather_limited([log_intact(http, run_id) for run_id in accepted])
    _answers(figures, answers)
    figures.accepted = len(accepted)
    figures.runs_per_s = len(accepted) / figures.wall_s if figures.wall_s else 0.0
    figures.complete = sum(1 for run in runs if run["log_complete"])
    figures.intact_logs = sum(intact)
    figures.ordered_entities, figures.entities = ordered(runs)
    figures.log_counts = log_counts(stack)
    return figures


def _answers(figures: Figures, answers: list[Answer]) -> None:
    codes = Counter("dropped" if a.status is None else str(a.status) for a in answers)
    figures.answers = dict(sorted(codes.items()))
    figures.dropped = codes.get("dropped", 0)
    figures.refused = sum(1 for a in answers if a.status == 503 and a.retry_after)
    figures.server_errors = (
        sum(1 for a in answers if a.status is not None and a.status >= 500) - figures.refused
    )
    seconds = [a.seconds for a in answers if a.status is not None]
    figures.post_p50_ms = pct(seconds, 50) * 1000
    figures.post_p95_ms = pct(seconds, 95) * 1000
    figures.post_max_ms = max(seconds, default=0.0) * 1000
    errors = Counter(a.error for a in answers if a.error)
    figures.first_errors = [f"{n} {TIMES} {error}" for error, n in errors.most_common(3)]


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_server() as url:
            alembic_upgrade(url)
            yield url
        return
    db = Database()
    try:
        db.migrate()
        yield db.url
    finally:
        db.remove()


def run_one(kind: str, requests: int, entities: int, clients: int) -> Figures:
    with database(kind) as url:
        stack = BenchStack(url)
        say(f"{kind}: starting Redis, aegir serve, aegir worker, aegir relay")
        try:
            stack.start()
            return asyncio.run(measure(stack, kind, requests, entities, clients))
        finally:
            stack.stop()


# The report.

ROWS: tuple[tuple[str, str], ...] = (
    ("Answers by status", "all 2xx, or 503 with Retry-After"),
    (
        "Server errors (5xx but 503 with Retry-After) / dropped connections",
        f"0 {TIMES} 500, 0 dropped",
    ),
    ("503 with Retry-After, sent again", "few"),
    ("Runs accepted", "every request"),
    ("POST p50 / p95 / max", ""),
    ("Posting time / wall time to the last complete log", ""),
    ("Runs per second, end to end", ""),
    ("Runs ended, by status", "all succeeded"),
    ("Logs complete / stored == emitted", "every run"),
    ("Entities whose runs started in requested order", "every entity"),
    ("Worker, relay and API logs", "no lock errors, no failed run"),
    ("CPU seconds while posting", ""),
    ("CPU seconds, whole wall time", ""),
)


def cells(f: dict[str, Any]) -> list[str]:
    accepted = f["accepted"]
    logs = "; ".join(
        f"{name}: " + ", ".join(f"{n} {TIMES} “{marker}”" for marker, n in found.items())
        for name, found in f["log_counts"].items()
        if found
    )
    return [
        ", ".join(f"{n} {TIMES} {code}" for code, n in f["answers"].items()),
        f"{f['server_errors']} / {f['dropped']}",
        str(f.get("refused", 0)),
        f"{accepted} of {f['requests']}",
        f"{f['post_p50_ms']:.0f} / {f['post_p95_ms']:.0f} / {f['post_max_ms']:.0f} ms",
        f"{f['posting_s']:.1f} s / {f['wall_s']:.1f} s",
        f"{f['runs_per_s']:.1f}/s",
        ", ".join(f"{n} {status}" for status, n in f["statuses"].items() if n),
        f"{f['complete']} / {f['intact_logs']} of {accepted}",
        f"{f['ordered_entities']} of {f['entities']}",
        logs or "none of them",
        cpu_text(f.get("cpu_posting", {}), f["posting_s"]),
        cpu_text(f.get("cpu_wall", {}), f["wall_s"]),
    ]


def cpu_text(used: dict[str, float], wall: float) -> str:
    """Each process's CPU seconds, the biggest first; "other processes" is the rest of
    the machine (the PostgreSQL server, and whatever else ran on it meanwhile)."""
    if not used:
        return "not measured"
    named = sorted(used.items(), key=lambda pair: -pair[1])
    parts = [f"{name} {seconds:.1f}" for name, seconds in named if seconds >= 0.1]
    return ", ".join(parts) + f" (of {os.cpu_count() or 1} {TIMES} {wall:.0f} s)"


def render(after: list[dict[str, Any]], before: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    columns = [(f"{f['database']}, before", f) for f in before]
    columns += [(f"{f['database']}{', after' if before else ''}", f) for f in after]
    table = [
        "| Figure | Aim | " + " | ".join(name for name, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    values = [cells(f) for _, f in columns]
    for index, (name, aim) in enumerate(ROWS):
        table.append(f"| {name} | {aim} | " + " | ".join(v[index] for v in values) + " |")
    errors = [
        f"- {f['database']}{' (before)' if f in before else ''}: " + "; ".join(f["first_errors"])
        for _, f in columns
        if f["first_errors"]
    ]
    head = [
        "## Writes under load (issue 14, item 4)",
        "",
        f"{meta['requests']:,} run requests (`lines={LINES}`) over {meta['entities']} "
        f"entities from {meta['clients']} concurrent clients, each its own keep-alive "
        "connection; a 503 is sent again after its Retry-After, a 500 or a dropped "
        "connection is not. Then every accepted run is waited for until its log is "
        "complete. `python -m bench.load`.",
        "",
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores), code "
        f"{meta['code']}" + (f"; before: code {meta['before_code']}" if before else "") + ". "
        "The machine was shared with other engineers' tests and benchmarks while this ran: "
        "the times are not clean figures, the counts are.",
        "",
    ]
    tail = ["", "The most frequent answers other than 202:", *errors] if errors else []
    return "\n".join(head + table + tail)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--entities", type=int, default=ENTITIES)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--save", type=Path, help="write the figures as JSON here")
    parser.add_argument("--before", type=Path, help="figures saved earlier, shown beside")
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    meta: dict[str, Any] = {
        "requests": args.requests,
        "entities": args.entities,
        "clients": args.clients,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "code": code_version(),
    }
    figures = [
        asdict(run_one(kind, args.requests, args.entities, args.clients))
        for kind in args.databases.split(",")
    ]
    before: list[dict[str, Any]] = []
    if args.before:
        saved = json.loads(args.before.read_text())
        before, meta["before_code"] = saved["figures"], saved["meta"]["code"]
    if args.save:
        args.save.write_text(json.dumps({"meta": meta, "figures": figures}, indent=1))
    markdown = render(figures, before, meta)
    print(markdown)
    if not args.no_results:
        write_section("load", markdown)
    failed = any(f["server_errors"] or f["dropped"] for f in figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
