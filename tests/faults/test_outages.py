"""Outages of what the system stands on: PostgreSQL stopped, Redis restarted, the API
killed mid-request. Nothing lost, nothing stored twice, nothing half-written, and a
clear 503 (never a 500) while the database is away."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from redis import Redis
from sqlalchemy import text

from app.db import create_engine
from app.events import EVENTS_STREAM
from app.faults import FAULT_EXIT_CODE
from tests.fixtures.services import RestartablePostgres
from tests.fixtures.stack import LEASE, Stack, running_stack, wait_for

OUTAGE = 10.0
FINAL = {"succeeded", "failed", "cancelled", "lost"}


@contextmanager
def _pg_stack(lease: float) -> Iterator[tuple[Stack, RestartablePostgres]]:
    """A PostgreSQL of its own, that the test stops and starts, and a stack on it."""
    server = RestartablePostgres()
    try:
        server.start()
        with running_stack(server.create_database(), AEGIR_RUN_LEASE=str(lease)) as stack:
            yield stack, server
    finally:
        server.remove()


@pytest.fixture
def pg_stack() -> Iterator[tuple[Stack, RestartablePostgres]]:
    """A lease longer than the outage: the worker rides it out."""
    with _pg_stack(OUTAGE + 10) as found:
        yield found


@pytest.mark.timeout(300)
def test_postgresql_stopped_for_longer_than_the_lease(tmp_path: Path) -> None:
    """Fault: PostgreSQL stopped for 10 s, twice the lease (5 s), while a safe run's
    command runs (with a child and a stray of its own).

    Checked: the worker, unable to renew its lease for a whole lease, stops the attempt
    itself (it cannot know whether the sweeper can still reach the database and give
    the run to another worker) and says so in the log; once the database is back, the
    lease settles the attempt and the run is run again: attempt 2 found none of attempt
    1's processes alive, the run succeeds, keeps the lost attempt, and its log says,
    between the attempts, why attempt 1 ended.
    """
    pids = tmp_path / "pids"
    with _pg_stack(LEASE) as (stack, server), stack.client() as http:
        app = stack.make_app(http, "pg-outage-long")
        run = stack.trigger(http, app, "probe", {"probe": {"pids": str(pids), "sleep": 60}})
        wait_for(lambda: pids.exists(), "attempt 1 to start", timeout=60)
        first = [int(pid) for pid in pids.read_text().split()]
        server.stop()
        time.sleep(2 * LEASE)
        server.start()
        done = stack.wait_status(http, run["id"], FINAL, timeout=120)
        wait_for(lambda: stack.run(http, run["id"])["log_complete"], "the log to be complete")
        lines = [x["line"] for x in stack.full_log(http, run["id"])]
    assert (done["status"], done["attempt"]) == ("succeeded", 2)
    attempts = [json.loads(x) for x in Path(f"{pids}.log").read_text().splitlines()]
    assert len(attempts) == 2
    assert not set(attempts[1]["alive_before"]) & set(first)
    stopped = next(i for i, x in enumerate(lines) if "lease could not be renewed" in x)
    lost = next(i for i, x in enumerate(lines) if x.startswith("attempt 1 was lost at"))
    second = max(i for i, x in enumerate(lines) if "attempt started" in x)
    assert stopped < lost < second
    assert done["lost_attempts"][0]["attempt"] == 1


@pytest.mark.timeout(300)
def test_postgresql_stopped_for_10_s_while_a_100000_line_log_streams(
    pg_stack: tuple[Stack, RestartablePostgres],
) -> None:
    """Fault: PostgreSQL stopped (fast shutdown: every connection cut) for 10 s while a
    run prints 100,000 lines; the stack's lease (20 s) is longer than the outage, but
    the worker's heartbeats fail all through it, and leases renewed just before it
    expire during it when the worker's last renewal was early.

    Checked: while it is down, ``/readyz`` and every API request (reads, a write)
    answer 503 with ``Retry-After``, never a 500 or a dropped connection, and the
    events wait unacknowledged in the Redis stream, and the relay logs the outage once;
    once it is back, the same run (attempt 1: its worker rode the outage out) succeeds,
    and stored == emitted: every line once, in order.
    """
    stack, server = pg_stack
    lines = 100_000
    with stack.client() as http:
        app = stack.make_app(http, "pg-outage")
        run = stack.trigger(http, app, "run", {"first": {"lines": lines, "pace": 0.0001}})
        wait_for(lambda: len(_log_page(http, run["id"], 1000)) >= 1000, "the log to stream")
        server.stop()
        answers = _requests_while_down(stack, http, app, OUTAGE)
        waiting = cast(int, Redis.from_url(stack.env["AEGIR_REDIS_URL"]).xlen(EVENTS_STREAM))
        server.start()
        done = stack.wait_status(http, run["id"], FINAL, timeout=180)
        stored = stack.full_log(http, run["id"])
    assert set(answers) == {(503, "5")}, answers
    assert waiting > 0, "events not stored are still in the stream, unacknowledged"
    assert (done["status"], done["attempt"]) == ("succeeded", 1)
    assert [x["seq"] for x in stored] == list(range(1, len(stored) + 1))
    out = [x["line"] for x in stored if x["stream"] == "stdout"]
    assert out == [f"line {n}" for n in range(1, lines + 1)]
    assert "500 Internal Server Error" not in stack.log("api")
    # The relay waited, saying so once (not once per retry), and said when it was over.
    relay = stack.log("relay")
    assert relay.count("database unreachable") == 1
    assert relay.count("events stored again") == 1


def _log_page(http: httpx.Client, run_id: str, limit: int) -> list[dict[str, Any]]:
    page = http.get(f"/api/v1/runs/{run_id}/log", params={"after": 0, "limit": limit})
    lines: list[dict[str, Any]] = page.json()["lines"]
    return lines


def _requests_while_down(
    stack: Stack, http: httpx.Client, app: dict[str, Any], seconds: float
) -> Counter[tuple[int, str | None]]:
    """What a client gets while the database is down: (status, Retry-After) counted."""
    answers: Counter[tuple[int, str | None]] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for response in (
            http.get("/readyz"),
            http.get(f"/api/v1/testapps/{app['id']}"),
            http.get("/api/v1/runs"),
            http.post("/api/v1/testapps", json={"name": f"down-{uuid.uuid4().hex[:8]}"}),
        ):
            answers[(response.status_code, response.headers.get("retry-after"))] += 1
        time.sleep(0.1)
    return answers


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_redis_restarted_while_a_run_streams(live: Stack, how: str) -> None:
    """Fault: Redis stopped (SIGTERM) or killed (SIGKILL) while a run prints 20,000
    lines, and started again 2 s later on the same data directory (append-only file).

    Checked: the worker and the relay are still the same processes; the run succeeds
    with attempt 1 and stored == emitted (every line once, in order: the emitter kept
    what it could not send, the relay re-read its pending entries); and the worker
    takes a new run after it.
    """
    lines = 20_000
    before = {name: live.processes[name].pid for name in ("worker", "relay")}
    with live.client() as http:
        app = live.make_app(http, f"redis-{how}")
        run = live.trigger(http, app, "run", {"first": {"lines": lines, "pace": 0.0002}})
        wait_for(lambda: len(_log_page(http, run["id"], 500)) >= 500, "the log to stream")
        if how == "kill":
            live.redis.kill()
        else:
            live.redis.stop()
        time.sleep(2)
        live.redis.start()
        done = live.wait_status(http, run["id"], FINAL, timeout=120)
        stored = live.full_log(http, run["id"])
        after = live.trigger(http, app, "run", {"first": {"lines": 1}})
        assert live.wait_status(http, after["id"], FINAL)["status"] == "succeeded"
    assert {name: live.processes[name].pid for name in before} == before
    assert all(live.processes[name].poll() is None for name in before)
    assert (done["status"], done["attempt"]) == ("succeeded", 1)
    assert [x["seq"] for x in stored] == list(range(1, len(stored) + 1))
    out = [x["line"] for x in stored if x["stream"] == "stdout"]
    assert out == [f"line {n}" for n in range(1, lines + 1)]


# The API killed mid-request.


@pytest.mark.parametrize("point", ["api-before-commit", "api-after-commit"])
def test_an_api_dying_at_a_commit_leaves_no_half_written_entity_or_run(
    live: Stack, point: str
) -> None:
    """Fault: the API process exits abruptly (``AEGIR_FAULT_EXIT``, as hard as a
    SIGKILL) just before, or just after, the commit of a request creating an entity
    (its whole graph) and of one requesting a run.

    Checked: the client gets no answer; before the commit nothing of the request is
    in the database, after it all of it is; every entity has its whole graph and
    every run its task rows; every run ends (one committed but never answered too).
    """
    name = f"dying-{point.split('-')[1]}"
    with live.client() as http:
        app = live.make_app(http, f"{name}-base")
        runs_before = {run["id"] for run in _runs_of(http, app["id"])}
    try:
        _die_during(live, point, "post", "/api/v1/testapps", {"name": name})
        op_id = next(o["id"] for o in app["operations"] if o["type"] == "run")
        values = {"values": {"first": {"lines": 2}}}
        _die_during(live, point, "post", f"/api/v1/operations/{op_id}/runs", values)
    finally:
        live.start_api()
    committed = point == "api-after-commit"
    with live.client() as http:
        created = http.get("/api/v1/testapps", params={"name": name}).json()
        assert [e["name"] for e in _items(created) if e["name"] == name] == (
            [name] if committed else []
        )
        runs = [run for run in _runs_of(http, app["id"]) if run["id"] not in runs_before]
        assert len(runs) == (1 if committed else 0)
        for run in runs:
            assert live.wait_status(http, run["id"], FINAL)["status"] == "succeeded"
    _assert_whole(live)


def _die_during(stack: Stack, point: str, method: str, path: str, body: Any) -> None:
    """The request, sent to an API set to die at ``point`` the first time it is reached."""
    if "api" in stack.processes:
        stack.kill("api", signal.SIGTERM)
    process = stack.start_api(AEGIR_FAULT_EXIT=f"{point}:1")
    with stack.client() as http, pytest.raises(httpx.TransportError):
        http.request(method, path, json=body)
    assert process.wait(30) == FAULT_EXIT_CODE
    stack.processes.pop("api")


@pytest.mark.timeout(300)
def test_an_api_killed_at_random_times_leaves_no_half_written_entity_or_run(
    live: Stack,
) -> None:
    """Fault: SIGKILL to the API at random moments (10 times), while four clients
    keep creating entities and requesting runs on them.

    Checked: some requests were cut off; every entity in the database has its whole
    graph and every run its task rows (whether or not its client was answered);
    every entity and run the clients were told about is there; every run ends.
    """
    told: dict[str, set[str]] = {"entities": set(), "runs": set()}
    cut = Counter[str]()
    stop = threading.Event()
    clients = [
        threading.Thread(target=_keep_writing, args=(live, told, cut, stop, n)) for n in range(4)
    ]
    for client in clients:
        client.start()
    try:
        for _ in range(10):
            time.sleep(random.uniform(0.3, 1.5))
            live.kill("api", signal.SIGKILL)
            live.start_api()
    finally:
        stop.set()
        for client in clients:
            client.join(60)
        if "api" not in live.processes:
            live.start_api()
    assert sum(cut.values()) > 0, "the kills cut requests off"
    _assert_whole(live)
    entities = _ids(asyncio.run(_query(live, "SELECT id FROM entities")))
    assert told["entities"] <= entities
    # Told or not (the API died after the commit, before the answer), every run ends.
    runs = _ids(asyncio.run(_query(live, f"{RUNS} WHERE e.name LIKE 'k_-%'")))
    assert told["runs"] <= runs
    with live.client() as http:
        for run_id in runs:
            assert live.wait_status(http, run_id, FINAL, timeout=60)["status"] == "succeeded"


def _keep_writing(
    stack: Stack, told: dict[str, set[str]], cut: Counter[str], stop: threading.Event, n: int
) -> None:
    """Create an entity, request a run on it, again and again; note what was answered."""
    with stack.client() as http:
        while not stop.is_set():
            try:
                created = http.post("/api/v1/testapps", json={"name": f"k{n}-{uuid.uuid4().hex}"})
                if created.status_code != 201:
                    continue
                told["entities"].add(created.json()["id"])
                op_id = next(o["id"] for o in created.json()["operations"] if o["type"] == "run")
                values = {"values": {"first": {"lines": 1}}}
                run = http.post(f"/api/v1/operations/{op_id}/runs", json=values)
                if run.status_code == 202:
                    told["runs"].add(run.json()["id"])
            except httpx.TransportError as error:
                cut[type(error).__name__] += 1
                time.sleep(0.2)  # the API is down: wait for it, do not spin


def _assert_whole(stack: Stack) -> None:
    """Every entity has the graph of its kind, and every run the task rows of its
    operation: the same shape as every other of its kind or operation."""
    graphs = asyncio.run(_query(stack, GRAPHS))
    shapes = {(kind, tasks, operations, steps) for _id, kind, tasks, operations, steps in graphs}
    assert len(shapes) == len({shape[0] for shape in shapes}), f"half-written: {shapes}"
    assert all(tasks > 0 and operations > 0 for _k, tasks, operations, _s in shapes)
    runs = asyncio.run(_query(stack, RUN_TASKS))
    run_shapes = {(operation, tasks) for _id, operation, tasks in runs}
    assert len(run_shapes) == len({op for op, _tasks in run_shapes}), f"half-written: {run_shapes}"
    assert all(tasks > 0 for _operation, tasks in run_shapes)


GRAPHS = """
SELECT e.id, e.kind,
       (SELECT count(*) FROM task_instances t WHERE t.entity_id = e.id),
       (SELECT count(*) FROM operations o WHERE o.entity_id = e.id),
       (SELECT count(*) FROM operation_tasks s JOIN operations o ON o.id = s.operation_id
         WHERE o.entity_id = e.id)
FROM entities e
"""
RUN_TASKS = """
SELECT r.id, e.kind || ':' || r.operation_type,
       (SELECT count(*) FROM run_tasks t WHERE t.run_id = r.id)
FROM runs r JOIN entities e ON e.id = r.entity_id
"""


RUNS = "SELECT r.id FROM runs r JOIN entities e ON e.id = r.entity_id"


def _ids(rows: list[Any]) -> set[str]:
    return {str(uuid.UUID(str(row[0]))) for row in rows}


async def _query(stack: Stack, sql: str) -> list[Any]:
    """Straight from the database the stack writes to, behind the API's back."""
    engine = create_engine(stack.env["AEGIR_DATABASE_URL"])
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql))).all())
    finally:
        await engine.dispose()


def _runs_of(http: httpx.Client, entity_id: str) -> list[dict[str, Any]]:
    response = http.get("/api/v1/runs", params={"entity": entity_id, "limit": 200})
    assert response.status_code == 200, response.text
    return _items(response.json())


def _items(body: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items
