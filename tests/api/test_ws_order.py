"""Run statuses on websockets: once a run's final status is sent, nothing says it goes on.

A run's statuses are published by several processes (API, worker, relay, sweeper) that
are not ordered: the API's ``cancelling`` can reach Redis after the worker's
``cancelled``. These tests publish in that order, as those processes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.events import publish, run_channel, status_messages
from app.state import app_state
from tests.fixtures.accounts import Account, make_account
from tests.fixtures.factories import make_graph, operation_id

WAIT = 10.0
# _Feed's ``PubSub.reset()``, deprecated by redis-py, warns as a subscriber leaves.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated reset:DeprecationWarning")


class Socket:
    """A websocket client that speaks ASGI to the app in this process."""

    def __init__(self, app: FastAPI, path: str, token: str) -> None:
        path, _, query = path.partition("?")
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"aegir.test"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("aegir.test", 80),
            "subprotocols": [],
        }
        self.app = app
        self.sent: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.left = asyncio.Event()
        self.connected = False

    async def _receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        await self.left.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self.sent.put(message)

    async def recv(self, wait: float = WAIT) -> dict[str, Any] | None:
        """The next message the server sent, ``None`` once it closed."""
        while True:
            message = await asyncio.wait_for(self.sent.get(), wait)
            if message["type"] == "websocket.close":
                return None
            if message["type"] == "websocket.send":
                body: dict[str, Any] = json.loads(message["text"])
                return body

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Socket]:
        serving = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        try:
            yield self
        finally:
            # A server notices a client gone only when it next sends: stop it instead.
            self.left.set()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving


async def _listening(socket: Socket, send: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    """Send a marker until the socket passes it on: it listens from then on; the marker."""
    for _ in range(int(WAIT / 0.05)):
        await send()
        try:
            heard = await socket.recv(0.05)
        except TimeoutError:
            continue
        assert heard is not None, "the socket closed"
        return heard
    raise AssertionError("the socket never listened")


async def test_events_never_send_a_stale_status_after_a_final_one(app: FastAPI) -> None:
    root = await make_account(app, "root", team=None, is_admin=True)
    redis = app_state(app).redis
    entity, ended, going, last = (str(uuid.uuid4()) for _ in range(4))
    async with Socket(app, "/ws/events", root.token).opened() as events:
        marker = str(uuid.uuid4())
        await _listening(events, lambda: publish(redis, status_messages(marker, "lost", entity)))
        # The worker ended the run, then the API's `cancelling` came.
        await publish(redis, status_messages(ended, "cancelled", entity))
        await publish(redis, status_messages(ended, "cancelling", entity))
        # A run that is still going is told as it goes.
        await publish(redis, status_messages(going, "cancelling", entity))
        await publish(redis, status_messages(going, "cancelled", entity))
        await publish(redis, status_messages(last, "succeeded", entity))
        heard: list[dict[str, Any]] = []
        while not heard or heard[-1]["run"] != last:
            message = await events.recv()
            assert message is not None
            heard.append(message)
    assert [m["status"] for m in heard if m["run"] == ended] == ["cancelled"]
    assert [m["status"] for m in heard if m["run"] == going] == ["cancelling", "cancelled"]
    assert {m["type"] for m in heard} == {"run"}
    assert heard[-1]["status"] == "succeeded"


async def test_a_run_tail_ends_with_the_final_status(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    site = (await make_graph(client))["site"]
    install = operation_id(site, "install")
    body = {"values": {"install": {"profile": "minimal"}}}
    answer = await client.post(f"/api/v1/operations/{install}/runs", json=body)
    assert answer.status_code == 202, answer.text
    run = answer.json()["id"]
    redis = app_state(app).redis
    line = json.dumps({"type": "log", "lines": [[1, "stdout", "line 1", 0.0]]})
    async with Socket(app, f"/ws/runs/{run}", account.token).opened() as tail:
        # Past the database's lines: the tail listens.
        first = await _listening(tail, lambda: redis.publish(run_channel(run), line))
        assert first["type"] == "log"
        # A queued run is cancelled at once: the API publishes `cancelled`; then a
        # stale `cancelling` comes, as when the worker was quicker than the API.
        assert (await client.post(f"/api/v1/runs/{run}/cancel")).status_code == 202
        await publish(redis, status_messages(run, "cancelling", site["id"]))
        heard: list[dict[str, Any]] = []
        while (message := await tail.recv()) is not None:
            heard.append(message)
    statuses = [m["status"] for m in heard if m["type"] in {"status", "end"}]
    assert statuses == ["cancelled", "cancelled"], heard
    assert heard[-1]["type"] == "end"
