"""The run state machine, called directly as the worker, relay, sweeper and API call it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.db import session_scope
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import (
    FINAL,
    MOVES,
    IllegalMove,
    Move,
    RunStatus,
    TaskStatus,
    after_expired_lease,
    check,
)
from app.events import Event, ExitEvent, LogEvent
from relay import store
from relay.sweeper import Sweeper, Swept
from tests.fixtures.factories import make_server, operation_id

LEASE = timedelta(minutes=5)
# A lease that expired the moment it was taken: the worker is as good as gone.
GONE = timedelta(seconds=-1)


async def _queued(client: httpx.AsyncClient, count: int) -> list[uuid.UUID]:
    """``count`` verify runs queued, in order, on one server."""
    verify = operation_id(await make_server(client), "verify")
    ids = []
    for _ in range(count):
        response = await client.post(f"/api/v1/operations/{verify}/runs", json={"values": {}})
        assert response.status_code == 202, response.text
        ids.append(uuid.UUID(response.json()["id"]))
    return ids


async def _claim(app: FastAPI, run_id: uuid.UUID, lease: timedelta = LEASE) -> int | None:
    async with session_scope(app.state.sessionmaker) as session:
        moved = await runs.claim(session, run_id, lease, f"worker-{uuid.uuid4()}")
        return None if moved is None else moved.attempt


async def _finish(app: FastAPI, run_id: uuid.UUID, attempt: int, status: str) -> uuid.UUID | None:
    async with session_scope(app.state.sessionmaker) as session:
        return await runs.finish(session, run_id, attempt, status, 0, 0)


async def _run(app: FastAPI, run_id: uuid.UUID) -> Run:
    async with session_scope(app.state.sessionmaker, writes=False) as session:
        return await runs.get(session, run_id)


async def test_two_claims_on_one_entity_exactly_one_wins(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    first, second = await _queued(client, 2)
    attempts = list(await asyncio.gather(_claim(app, first), _claim(app, second)))
    assert attempts == [1, None], "the oldest run goes first, and alone"
    again = list(await asyncio.gather(_claim(app, second), _claim(app, second)))
    assert again == [None, None], "nothing else of the entity starts while one runs"
    assert (await _run(app, second)).status == RunStatus.queued


async def test_one_run_claimed_twice_at_once_is_taken_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    attempts = await asyncio.gather(_claim(app, run_id), _claim(app, run_id))
    assert sorted(attempts, key=str) == [1, None]


async def test_a_stale_attempts_finish_and_renewal_change_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id, GONE) == 1
    swept = await _sweep(app)
    assert (await _run(app, run_id)).status == RunStatus.queued
    assert await _claim(app, run_id) is None, "not before the lost attempt's log is closed"
    await _relay(app, swept.lost)
    assert await _claim(app, run_id) == 2

    assert await _finish(app, run_id, 1, RunStatus.succeeded) is None
    async with session_scope(app.state.sessionmaker) as session:
        assert await runs.renew(session, run_id, 1, LEASE) is None
    run = await _run(app, run_id)
    assert (run.status, run.attempt, run.finished_at) == (RunStatus.running, 2, None)

    assert await _finish(app, run_id, 2, RunStatus.failed) == run.entity_id
    assert (await _run(app, run_id)).status == RunStatus.failed


async def test_the_relay_refuses_a_stale_attempts_exit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id, GONE) == 1
    async with session_scope(app.state.sessionmaker) as session:
        run = await runs.get(session, run_id)
        await runs.settle(session, run, unsafe=("server_verify",), max_attempts=3, processes="")
    exit_1: ExitEvent = {"t": "exit", "run": str(run_id), "attempt": 1, "status": "succeeded",
                         "code": 0, "first_seq": 1, "last_seq": 0, "at": time.time()}  # fmt: skip
    async with session_scope(app.state.sessionmaker) as session:
        applied = await store.apply(session, app.state.catalog, [exit_1])
    assert applied.finished_entities == set()
    run = await _run(app, run_id)
    assert run.status == RunStatus.lost, "a lost run stays lost whatever its worker says late"
    assert "not safe to re-run" in (run.error or "")


async def test_cancelling_ends_cancelled_when_the_worker_is_gone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id, GONE) == 1
    response = await client.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.json()["status"] == RunStatus.cancelling
    swept = await _sweep(app)
    assert run_id not in swept.enqueue + swept.release, "a cancelled run is never run again"
    run = (await client.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == RunStatus.cancelled
    assert run["finished_at"] is not None
    assert {task["status"] for task in run["tasks"]} == {TaskStatus.skipped}


async def test_cancelling_ends_as_the_worker_reports(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    attempt = await _claim(app, run_id)
    assert attempt == 1
    async with session_scope(app.state.sessionmaker) as session:
        assert await runs.cancel(session, run_id) == RunStatus.cancelling
        assert await runs.renew(session, run_id, attempt, LEASE) == RunStatus.cancelling
    assert await _finish(app, run_id, attempt, RunStatus.cancelled) is not None
    assert (await _run(app, run_id)).status == RunStatus.cancelled


@pytest.mark.parametrize("move", list(Move))
def test_no_move_takes_a_cancelling_run_anywhere_but_an_end(move: Move) -> None:
    leads_to = MOVES[move].get(RunStatus.cancelling, frozenset())
    assert leads_to <= FINAL | {RunStatus.cancelling}


def test_an_expired_lease_settles_cancelling_as_cancelled_even_if_safe_to_rerun() -> None:
    move, status, _why = after_expired_lease(RunStatus.cancelling, 1, unsafe=(), max_attempts=3)
    assert (move, status) == (Move.lose, RunStatus.cancelled)


def test_a_run_whose_worker_keeps_dying_is_lost_after_the_last_attempt() -> None:
    assert after_expired_lease(RunStatus.running, 2, (), max_attempts=3)[1] == RunStatus.queued
    move, status, why = after_expired_lease(RunStatus.running, 3, (), max_attempts=3)
    assert (move, status) == (Move.lose, RunStatus.lost)
    assert "3 attempts" in why


async def test_a_lost_attempts_log_ends_with_why_and_is_complete(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id, GONE) == 1
    line: LogEvent = {"t": "log", "run": str(run_id), "attempt": 1,
                      "lines": [(1, "stdout", "before the worker died", time.time())]}  # fmt: skip
    swept = await _sweep(app)
    assert not (await _run(app, run_id)).log_complete
    # Sent twice (a rescan): said once.
    await _relay(app, [line, *swept.lost, *swept.lost])
    run = await _run(app, run_id)
    assert (run.log_complete, run.log_emitted) == (True, 2)
    log = (await client.get(f"/api/v1/runs/{run_id}/log")).json()["lines"]
    assert log[0]["line"] == "before the worker died"
    assert log[1]["stream"] == "system"
    assert log[1]["line"].startswith("attempt 1 was lost at ")
    assert "worker gone" in log[1]["line"]
    assert "no process of it was left running" in log[1]["line"]
    [kept] = run.lost_attempts
    assert kept["attempt"] == 1 and "worker gone" in kept["why"]


async def _sweep(app: FastAPI) -> Swept:
    return await Sweeper(app.state.sessionmaker, app.state.catalog, app.state.settings).sweep()


async def _relay(app: FastAPI, events: Sequence[Event]) -> store.Applied:
    async with session_scope(app.state.sessionmaker) as session:
        return await store.apply(session, app.state.catalog, events)


@pytest.mark.parametrize(
    ("move", "current", "new"),
    [
        (Move.finish, RunStatus.queued, RunStatus.succeeded),
        (Move.cancel, RunStatus.succeeded, RunStatus.cancelled),
        (Move.requeue, RunStatus.cancelling, RunStatus.queued),
        (Move.claim, RunStatus.lost, RunStatus.running),
        (Move.finish, RunStatus.running, RunStatus.lost),
    ],
)
def test_an_illegal_move_raises(move: Move, current: RunStatus, new: RunStatus) -> None:
    with pytest.raises(IllegalMove):
        check(move, current, new)


async def test_finishing_with_a_status_that_is_no_ending_raises_before_writing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id) == 1
    with pytest.raises(IllegalMove):
        await _finish(app, run_id, 1, RunStatus.queued)
    assert (await _run(app, run_id)).status == RunStatus.running


async def test_cancelling_an_ended_run_raises_and_answers_409(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    assert await _claim(app, run_id) == 1
    assert await _finish(app, run_id, 1, RunStatus.succeeded) is not None
    async with session_scope(app.state.sessionmaker) as session:
        with pytest.raises(IllegalMove):
            await runs.cancel(session, run_id)
    response = await client.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert response.json()["detail"] == "the run has already ended: succeeded"
    assert (await _run(app, run_id)).status == RunStatus.succeeded


async def test_a_lost_attempt_on_another_machine_says_it_was_not_checked(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [run_id] = await _queued(client, 1)
    async with session_scope(app.state.sessionmaker) as session:
        moved = await runs.claim(session, run_id, GONE, "elsewhere.example:4242")
        assert moved is not None and moved.attempt == 1
    swept = await _sweep(app)
    [event] = [event for event in swept.lost if event["run"] == str(run_id)]
    assert "worker elsewhere.example:4242" in event["line"]
    assert "cannot reach" in event["line"] and "not checked" in event["line"]
