"""Pages at fleet size: 10,000 sites and 1,000,000 log lines (issue 14, scale).

For each database (SQLite, the embedded default; PostgreSQL): a fleet seeded row for row
as the API writes it (``bench.seed``), then ``aegir serve`` as ``make run`` starts it,
and ``REQUESTS`` requests in turn to each page and API read, timed by the client. The
statements each request runs are counted on an in-process app over the same database.

    .venv/bin/python -m bench.pages                      # full size, both databases
    AEGIR_BENCH_SCALE=0.1 .venv/bin/python -m bench.pages    # a tenth, to try it out
    AEGIR_BENCH_DATABASES=sqlite .venv/bin/python -m bench.pages
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.catalog.registry import catalog_with
from app.config import Environment, Settings
from app.db import create_engine
from app.main import create_app
from bench.sections import write_section
from bench.seed import Seeded, Shape, seed, site_name, team_id
from bench.system import BenchStack, Database, code_version, cpu_model
from tests.fixtures.accounts import PASSWORD  # what BenchStack.create_account sets
from tests.fixtures.services import alembic_upgrade, postgres_server
from tests.fixtures.stack import wait_for

SCALE = float(os.environ.get("AEGIR_BENCH_SCALE", "1"))
DATABASES = os.environ.get("AEGIR_BENCH_DATABASES", "sqlite,postgresql").split(",")
REQUESTS = int(os.environ.get("AEGIR_BENCH_REQUESTS", "200"))
WARM_UP = 10
# A team's admin, not a site admin: every list is filtered to the teams she is in.
USER = "alice"
AIM_MS = 50.0


def shape(scale: float) -> Shape:
    def n(value: int) -> int:
        return max(1, int(value * scale))

    return Shape(
        sites=n(10_000), servers=n(20), platforms=n(100), runs=n(20_000),
        log_lines=n(1_000_000), big_log=n(200_000), logged_runs=n(4_000),
    )  # fmt: skip


SHAPE = shape(SCALE)


def say(message: str) -> None:
    print(f"bench.pages: {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    name: str
    path: str
    samples: list[float]
    cpu: float  # the API process's CPU seconds per request
    queries: int

    def pct(self, p: int) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[p - 1] * 1000


def requests_to_time(seeded: Seeded, sites: int) -> list[tuple[str, str]]:
    """(what, path): pages a person opens, and the API reads behind them."""
    deep_page = max(1, sites // 25)  # the sites list shows 25 a page
    site, big, small = seeded.sites[len(seeded.sites) // 2], seeded.big_run, seeded.small_run
    named = site_name(len(seeded.sites) // 3).split(".")[0]
    deep_line = int(SHAPE.big_log * 0.9)
    last_runs = -(-SHAPE.runs // 50)  # the runs list shows 50 a page
    mid_runs = min(100, last_runs // 4)
    return [
        ("Sites list, page 1", "/sites"),
        (f"Sites list, page {deep_page} (the last)", f"/sites?page={deep_page}"),
        ("Sites list, name filter `shop` (a tenth match)", "/sites?name=shop"),
        (f"Sites list, name filter `{named}` (one matches)", f"/sites?name={named}"),
        ("Site page", f"/sites/{site}"),
        ("Servers list (each used by hundreds of sites)", "/servers"),
        ("Runs list, page 1", "/runs"),
        (f"Runs list, page {mid_runs}", f"/runs?page={mid_runs}"),
        (f"Runs list, page {last_runs} (the last)", f"/runs?page={last_runs}"),
        ("Run page", f"/runs/{small}"),
        ("Run page, the run with the big log", f"/runs/{big}"),
        ("API: sites, first 50", "/api/v1/sites"),
        (f"API: sites, offset {sites - 50}", f"/api/v1/sites?offset={max(0, sites - 50)}"),
        ("API: sites, name filter `shop`", "/api/v1/sites?name=shop"),
        ("API: a site", f"/api/v1/sites/{site}"),
        ("API: runs, first 50", "/api/v1/runs"),
        ("API: a site's runs", f"/api/v1/runs?entity={site}"),
        ("API: a run", f"/api/v1/runs/{big}"),
        ("API: big log, first 1,000 lines", f"/api/v1/runs/{big}/log"),
        ("API: big log, 1,000 lines 90 % in", f"/api/v1/runs/{big}/log?after={deep_line}"),
    ]


async def sign_in(http: httpx.AsyncClient, username: str) -> None:
    """The dashboard's session cookie, through the login form as a browser gets it."""
    form = (await http.get("/login")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if token is None:
        raise RuntimeError("the login form has no CSRF token")
    data = {"username": username, "password": PASSWORD, "csrf_token": token.group(1)}
    answer = await http.post("/login", data=data)
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_requests(
    page: httpx.AsyncClient, api: httpx.AsyncClient, path: str, server: int
) -> tuple[list[float], float]:
    """Each request's time as the client saw it, and the API process's CPU time per
    request (which waiting for a busy machine's cores does not inflate)."""
    http = api if path.startswith("/api/") else page
    samples = []
    cpu = 0.0
    for i in range(WARM_UP + REQUESTS):
        if i == WARM_UP:
            cpu = cpu_seconds(server)
        start = time.perf_counter()
        answer = await http.get(path)
        elapsed = time.perf_counter() - start
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        if i >= WARM_UP:
            samples.append(elapsed)
    return samples, (cpu_seconds(server) - cpu) / REQUESTS


@contextmanager
def counted(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


@asynccontextmanager
async def in_process(stack: BenchStack, url: str) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app in this process, over the same database, with a signed-in client."""
    settings = Settings(
        env=Environment.test,
        secret_key=secrets.token_urlsafe(32),
        database_url=url,
        redis_url=stack.redis_url,
        var_dir=stack.root / "var-in-process",
        login_lockout=timedelta(seconds=5),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench.test") as http:
            yield app, http


async def count_queries(stack: BenchStack, url: str, paths: list[str]) -> dict[str, int]:
    found = {}
    async with in_process(stack, url) as (app, http):
        await sign_in(http, USER)
        headers = {"Authorization": f"Bearer {stack.token}"}
        for path in paths:
            extra = headers if path.startswith("/api/") else {}
            await http.get(path, headers=extra)  # once: a token's last use is noted once
            with counted(app.state.engine) as statements:
                answer = await http.get(path, headers=extra)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path} in process: {answer.status_code}")
            found[path] = len(statements)
    return found


async def fill(url: str, stack: BenchStack) -> Seeded:
    engine = create_engine(url)
    try:
        team = await team_id(engine, "ops")
        catalog = catalog_with(())  # built-ins and installed plugins, as `make run` has
        started = time.monotonic()
        seeded = await seed(engine, catalog, team, SHAPE)
        say(f"seeded in {time.monotonic() - started:.0f} s: {seeded.rows}")
        if engine.dialect.name == "postgresql":
            # What autovacuum would have done by the time a fleet is this big.
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("ANALYZE"))
        return seeded
    finally:
        await engine.dispose()


@dataclass
class Result:
    figures: list[Figure]
    load: tuple[float, float]  # the machine's 1-minute load average, before and after


async def measure(stack: BenchStack, url: str, seeded: Seeded) -> Result:
    timed = requests_to_time(seeded, SHAPE.sites)
    queries = await count_queries(stack, url, [path for _, path in timed])
    figures = []
    before = os.getloadavg()[0]
    server = stack.processes["api"].pid
    api = stack.api
    async with api.http() as api_http, api.http() as page_http:
        page_http.headers.pop("Authorization")
        await sign_in(page_http, USER)
        for name, path in timed:
            samples, cpu = await time_requests(page_http, api_http, path, server)
            figures.append(Figure(name, path, samples, cpu, queries[path]))
            say(f"{name}: p95 {figures[-1].pct(95):.1f} ms")
    return Result(figures, (before, os.getloadavg()[0]))


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_server() as url:
            yield url
        return
    db = Database()
    try:
        yield db.url
    finally:
        db.remove()


def run_one(kind: str) -> Result:
    with database(kind) as url:
        say(f"{kind}: migrating")
        alembic_upgrade(url)
        stack = BenchStack(url)
        try:
            stack.redis.start()
            stack.token = stack.create_account(USER, team="ops", role="admin")
            seeded = asyncio.run(fill(url, stack))
            stack.start_process("api")
            wait_for(stack._api_ready, "the API to answer", timeout=60)
            return asyncio.run(measure(stack, url, seeded))
        finally:
            stack.stop()


FIXED = [
    "What these pages were changed for (issue 14):",
    "",
    "- Links: the templates' `url_for` works out each route's path once; Starlette's "
    "tried every route in turn, about 0.3 ms a link, some 45 ms for a 50-row runs list.",
    "- Runs list: newest first by index (migration 0006: `runs (created_at, id)` and "
    "`(status, created_at, id)`), the team checked row by row, task rows left unread.",
    "- Lists say how many use each entity with a count instead of loading every "
    "dependent (a servers list whose servers hold 500 sites each: 400 ms to 12 ms).",
    "- Dependents and their counts filtered by team without SQLite (no statistics) "
    "starting from every entity of the team (10 to 20 ms off every sites list).",
    "- The log API and the full text read lines as rows, not ORM objects (half the time).",
    "- A list or page showing a latest run no longer fails (500) on `url_for` in a macro.",
]


def cost(result: Result) -> str:
    met = sum(f.pct(95) <= AIM_MS for f in result.figures)
    cpu = sorted(f.cpu * 1000 for f in result.figures)
    return (
        f"p95 ≤ {AIM_MS:g} ms: {met} of {len(cpu)} rows. Each request cost the API process "
        f"{cpu[0]:.0f} to {cpu[-1]:.0f} ms of CPU (median row {statistics.median(cpu):.0f} "
        "ms); a p95 far above that is waiting: for the shared cores, and on PostgreSQL for "
        "the database server too."
    )


def render(results: dict[str, Result]) -> str:
    s = SHAPE
    lines = [
        "## Pages at fleet size",
        "",
        f"Aim: p95 ≤ {AIM_MS:g} ms for the sites list, a site page, the runs list and a run "
        "page, with a constant number of SQL statements per request "
        "(`tests/web/test_query_counts.py` checks that the count does not grow with the data).",
        "",
        f"- Data: {s.sites:,} sites on {s.platforms:,} platforms and {s.servers:,} servers "
        f"(each with its tasks and operations, as the API creates them), {s.runs:,} runs, "
        f"{s.log_lines:,} log lines ({s.big_log:,} in one run, the rest over "
        f"{s.logged_runs:,} runs); written by `bench/seed.py`.",
        f"- {REQUESTS} requests in turn per row after {WARM_UP} unmeasured, one client, "
        "timed by the client over HTTP to `aegir serve` (one uvicorn process); pages signed "
        "in with a session cookie, API reads with a bearer token; as a team's admin (not a "
        "site admin), so that every list is filtered by team as most users' are.",
        "- Statements: counted per request (`before_cursor_execute`) on the app in process "
        "over the same database; they include `BEGIN` and the sign-in's own reads.",
        "- API CPU: the `aegir serve` process's user + system CPU time over the timed "
        "requests, per request: what a request costs, which waiting for a busy machine's "
        "cores does not inflate (on SQLite it includes the queries; on PostgreSQL the "
        "server's own work is not in it).",
        "- PostgreSQL: a throwaway server started with `fsync=off`, `ANALYZE`d after seeding.",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores; the load average in each "
        "heading says whether other work shared them (about 1: the bench alone; well above: "
        f"not a clean figure); code {code_version()}.",
        "",
        *FIXED,
        "",
    ]
    for kind, result in results.items():
        load = "load average {:.1f} before, {:.1f} after".format(*result.load)
        lines += [f"### {kind} ({load})", ""]
        lines += ["| request | p50 ms | p95 ms | max ms | API CPU ms | statements | aim |"]
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for f in result.figures:
            verdict = "met" if f.pct(95) <= AIM_MS else "**missed**"
            lines.append(
                f"| {f.name} | {f.pct(50):.1f} | {f.pct(95):.1f} | "
                f"{max(f.samples) * 1000:.1f} | {f.cpu * 1000:.1f} | {f.queries} | {verdict} |"
            )
        lines += ["", cost(result), ""]
    return "\n".join(lines)


def main() -> int:
    results = {}
    for kind in DATABASES:
        results["SQLite" if kind == "sqlite" else "PostgreSQL"] = run_one(kind)
    markdown = render(results)
    print(markdown)
    if SCALE == 1:
        write_section("pages", markdown)
        say("wrote bench/RESULTS.md (section pages)")
    else:
        say(f"scale {SCALE}: RESULTS.md left alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
