"""Log lines as the relay stores them in bulk (the driver's own executemany): each once,
with the time the worker read it, to the microsecond, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from app.db import session_scope
from app.entities.run import repository as runs
from tests.fixtures.factories import make_server, operation_id

# Just under a second's end, just over, a half: where rounding could slip a second.
TIMES = (1764246000.9999996, 1764246001.0000004, 1764246001.5, 1751587234.3891134)


async def test_lines_keep_their_time_and_are_stored_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    verify = operation_id(await make_server(client), "verify")
    run = await client.post(f"/api/v1/operations/{verify}/runs", json={"values": {}})
    run_id = uuid.UUID(run.json()["id"])
    lines = [(seq, "stdout", f"line {seq}", at) for seq, at in enumerate(TIMES, start=1)]
    async with session_scope(app.state.sessionmaker) as session:
        await runs.insert_lines(session, run_id, lines)
    async with session_scope(app.state.sessionmaker) as session:
        await runs.insert_lines(session, run_id, [*lines[2:], (5, "stderr", "late", 1.0)])
    async with session_scope(app.state.sessionmaker, writes=False) as session:
        stored = await runs.lines_after(session, run_id, 0, 100)
    assert [(line.seq, line.line) for line in stored] == [
        (1, "line 1"), (2, "line 2"), (3, "line 3"), (4, "line 4"), (5, "late"),
    ]  # fmt: skip
    expected = [datetime.fromtimestamp(at, UTC) for at in (*TIMES, 1.0)]
    assert [line.at for line in stored] == expected
