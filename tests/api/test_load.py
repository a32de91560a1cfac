"""Writes under load on SQLite: they wait their turn, or are told to come back; never 500.

The API here is the in-process app; the "other process" (a worker, a relay) is a
second engine on the same file, which contends for SQLite's lock as one would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.config import Environment, Settings
from app.db import create_engine, create_sessionmaker, session_scope
from app.entities.run.models import Run
from app.main import create_app
from tests.fixtures.accounts import Account, api_client, make_account
from tests.fixtures.services import alembic_upgrade

CLIENTS = 50
ENTITIES = 10


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('load') / 'aegir.sqlite3'}"
    alembic_upgrade(url)
    return url


def _settings(url: str, var_dir: Path, redis_url: str, **sqlite: Any) -> Settings:
    return Settings(
        env=Environment.test,
        secret_key="test-secret-key-not-for-production",
        database_url=url,
        redis_url=redis_url,
        var_dir=var_dir,
        catalog_modules=["tests.fixtures.catalog"],
        **sqlite,
    )


@asynccontextmanager
async def _api(settings: Settings, name: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on ``settings``, and a client signed in as a new admin of team ``name``."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        account: Account = await make_account(app, name, team=name)
        async with api_client(app, account) as http:
            # Once, so that no request below also has a token's last use to record.
            assert (await http.get("/api/v1/runs")).status_code == 200
            yield app, http


@asynccontextmanager
async def _rival(url: str, hold: asyncio.Event | None = None) -> AsyncIterator[asyncio.Task[int]]:
    """Another process's writes on the same file: short ones in a loop until the block
    ends; or, given ``hold``, one that keeps the lock until ``hold`` is set."""
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    stop, holding = asyncio.Event(), asyncio.Event()

    async def write() -> int:
        done = 0
        while not stop.is_set():
            async with session_scope(sessions) as session:
                await session.execute(text("UPDATE teams SET name = name"))
                holding.set()
                await (hold.wait() if hold else asyncio.sleep(0.01))
            done += 1
            if hold:
                break
        return done

    task = asyncio.create_task(write())
    try:
        await holding.wait()
        yield task
    finally:
        stop.set()
        if hold:
            hold.set()
        await task
        await engine.dispose()


async def _run_ops(http: httpx.AsyncClient, count: int, prefix: str) -> list[str]:
    ops = []
    for n in range(count):
        app = await http.post("/api/v1/testapps", json={"name": f"{prefix}-{n}"})
        assert app.status_code == 201, app.text
        ops.append(next(o["id"] for o in app.json()["operations"] if o["type"] == "run"))
    return ops


async def _post(http: httpx.AsyncClient, op_id: str) -> httpx.Response:
    return await http.post(f"/api/v1/operations/{op_id}/runs", json={"values": {}})


async def _runs(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Run)) or 0)


def _refused_cleanly(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.headers.get("retry-after") is not None


async def test_concurrent_writes_wait_their_turn_beside_another_writer(
    sqlite_url: str, tmp_path: Path, redis_url: str
) -> None:
    async with _api(_settings(sqlite_url, tmp_path, redis_url), "wait") as (app, http):
        ops = await _run_ops(http, ENTITIES, "wait")
        before = await _runs(app)
        async with _rival(sqlite_url) as rival:
            answers = await asyncio.gather(
                *(_post(http, ops[n % ENTITIES]) for n in range(CLIENTS))
            )
        assert [a.status_code for a in answers] == [202] * CLIENTS, [a.text for a in answers]
        assert await _runs(app) == before + CLIENTS
        assert rival.result() > 0  # the other process wrote meanwhile, too


async def test_a_lock_held_past_the_busy_timeout_answers_503_with_retry_after(
    sqlite_url: str, tmp_path: Path, redis_url: str
) -> None:
    short = _settings(sqlite_url, tmp_path, redis_url, sqlite_busy_timeout=timedelta(seconds=0.2))
    async with _api(short, "held") as (app, http):
        [op] = await _run_ops(http, 1, "held")
        before = await _runs(app)
        async with _rival(sqlite_url, hold=asyncio.Event()):
            answers = await asyncio.gather(*(_post(http, op) for _ in range(5)))
            assert all(_refused_cleanly(a) for a in answers), [a.status_code for a in answers]
        assert await _runs(app) == before  # nothing half-written
        assert (await _post(http, op)).status_code == 202  # the lock let go: writes again


async def test_a_full_write_queue_answers_503_at_once_and_the_queued_writes_succeed(
    sqlite_url: str, tmp_path: Path, redis_url: str
) -> None:
    queue = 2
    # The write at the lock must still be waiting when the others are refused.
    patient = timedelta(seconds=60)
    settings = _settings(
        sqlite_url, tmp_path, redis_url, sqlite_write_queue=queue, sqlite_busy_timeout=patient
    )
    async with _api(settings, "full") as (app, http):
        [op] = await _run_ops(http, 1, "full")
        before = await _runs(app)
        hold = asyncio.Event()
        async with _rival(sqlite_url, hold=hold):
            posts = [asyncio.create_task(_post(http, op)) for _ in range(8)]
            # While the lock is held, one write waits at it and ``queue`` wait their turn;
            # the others cannot wait too, and are told so.
            refused = 8 - 1 - queue
            waiting = set(posts)
            while len(posts) - len(waiting) < refused:
                _done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            hold.set()
            answers = await asyncio.gather(*posts)
        codes = sorted(a.status_code for a in answers)
        assert codes == [202] * (1 + queue) + [503] * refused
        assert all(_refused_cleanly(a) for a in answers if a.status_code == 503)
        assert await _runs(app) == before + 1 + queue
