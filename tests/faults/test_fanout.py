"""Many websocket clients on one run's log, through one API process."""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.sync.client import ClientConnection

from tests.fixtures.processes import redis_clients_of
from tests.fixtures.stack import Stack

SUBSCRIBERS = 200
LINES = 2_000
PACE = 0.002  # seconds between lines: they come live, over several seconds
HANDSHAKES = 50  # websocket handshakes at once


@dataclass
class Tail:
    """What one subscriber saw, checked as it came: no list of every line for each."""

    count: int = 0
    last: int = 0
    disorder: list[tuple[int, int]] = field(default_factory=list)  # (after, got)
    digest: int = 0  # crc32 of every line's text, in order
    end: dict[str, object] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, message: dict[str, object]) -> None:
        if message["type"] == "end":
            self.end = message
        if message["type"] != "log":
            return
        self.started.set()
        for line in message["lines"]:  # type: ignore[attr-defined]
            if line["seq"] != self.last + 1:
                self.disorder.append((self.last, line["seq"]))
            self.last = line["seq"]
            self.count += 1
            self.digest = zlib.crc32(line["line"].encode(), self.digest)


async def _follow(stack: Stack, run_id: str, tail: Tail, gate: asyncio.Semaphore) -> None:
    async with gate:
        socket = await connect(
            f"{stack.ws_url}/ws/runs/{run_id}",
            additional_headers=stack.headers,
            max_size=1 << 24,
            open_timeout=30,
        )
    async with socket:
        async for message in socket:
            tail.take(json.loads(message))


async def _api_connections(stack: Stack) -> list[dict[str, object]]:
    redis = aioredis.Redis(port=stack.redis_port)
    try:
        clients = await redis.client_list()
    finally:
        await redis.aclose()
    return redis_clients_of(stack.processes["api"].pid, stack.redis_port, clients)


async def _fan_out(stack: Stack, run_id: str) -> tuple[list[Tail], list[dict[str, object]]]:
    tails = [Tail() for _ in range(SUBSCRIBERS)]
    gate = asyncio.Semaphore(HANDSHAKES)
    readers = [asyncio.create_task(_follow(stack, run_id, tail, gate)) for tail in tails]
    # Every subscriber has a line, so every one is subscribed: count the API's connections.
    started = asyncio.gather(*(tail.started.wait() for tail in tails))
    await asyncio.wait_for(started, 120)
    connections = await _api_connections(stack)
    await asyncio.wait_for(asyncio.gather(*readers), 300)
    return tails, connections


def test_every_subscriber_gets_every_line_in_order_over_one_redis_connection(live: Stack) -> None:
    """Fault: 200 clients on one run's log, as a popular deploy gets watched. Each
    gets every line once, in order, then the end; the API holds one subscription."""
    with live.client() as http:
        app = live.make_app(http, "fanout")
        # The first step's sleep leaves the subscribers time to connect: lines come live.
        values = {"first": {"lines": 0, "sleep": 3}, "second": {"lines": LINES, "pace": PACE}}
        run = live.trigger(http, app, "two", values)
        tails, connections = asyncio.run(_fan_out(live, run["id"]))
        stored = live.full_log(http, run["id"])
    digest = 0
    for line in stored:
        digest = zlib.crc32(line["line"].encode(), digest)
    assert len(stored) == LINES + 2  # and each step's "to stderr"
    for tail in tails:
        assert tail.disorder == []
        assert (tail.count, tail.digest) == (len(stored), digest)
        assert tail.end is not None and tail.end["complete"] is True
        assert tail.end["status"] == "succeeded"
    subscribed = [c for c in connections if int(str(c["sub"])) > 0]
    assert len(subscribed) == 1, connections
    assert len(connections) < 10, connections  # not one per subscriber


def _statuses_of(socket: ClientConnection, run_id: str, last: str) -> list[str]:
    statuses: list[str] = []
    while last not in statuses:
        message = json.loads(socket.recv(timeout=30))
        if message.get("run") == run_id:
            statuses.append(message["status"])
    return statuses


def test_the_events_socket_is_told_to_resync_after_redis_restarts(live: Stack) -> None:
    """Fault: Redis restarted under a connected ``/ws/events`` client. Once the API has
    subscribed again, the client is told to re-read (it may have missed changes), and
    it hears the next runs' statuses."""
    with live.client() as http, live.connect("/ws/events") as socket:
        app = live.make_app(http, "resync")
        first = live.trigger(http, app, "run", {"first": {"lines": 1}})
        assert _statuses_of(socket, first["id"], "succeeded")[-1] == "succeeded"
        live.redis.stop()
        live.redis.start()
        # Statuses published before the restart may still be on their way (the relay
        # says a run's end once more when its worker had said it already); then resync.
        while (message := json.loads(socket.recv(timeout=30))).get("type") == "run":
            assert message["run"] == first["id"]
        assert message == {"type": "resync"}
        second = live.trigger(http, app, "run", {"first": {"lines": 1}})
        assert _statuses_of(socket, second["id"], "succeeded") == [
            "queued", "running", "succeeded",
        ]  # fmt: skip
