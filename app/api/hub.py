"""One Redis pub/sub connection per API process, fanned out to its websocket clients.

A thousand clients tailing one run cost one subscription, not a thousand: the hub
subscribes to a channel while at least one local client wants it, decodes each message
once, and puts it in every such client's bounded buffer. A client that falls behind is
flagged ``overflowed`` and its buffer dropped: it catches up from the database instead,
so memory per client stays bounded and a slow client never slows the hub or the others.
After Redis is lost, the hub reconnects, subscribes again, and flags every client of a
channel once it is live again, as messages may have gone by in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")
Opener = Callable[[], AbstractAsyncContextManager[T]]

# Messages held for one client at most; past that it is fed from the database instead.
# Cheap: every client holds the same decoded messages, so a client costs a pointer per
# message; deep enough that a thousand clients of a fast log stay live, instead of all
# going to the database at once.
CLIENT_BUFFER = 4096
RETRY = 0.5  # seconds between attempts to reach Redis again
# Clients reading the database at once, at most: a thousand catching up together wait
# their turn here rather than take every pooled connection (and time out waiting).
READERS = 4
PING_EVERY = 15.0  # a quiet connection is pinged; no answer by the next period: lost


class Subscription:
    """One client's view of a channel: ``async with`` it, then ``next()`` messages.

    ``next()`` answers ``None`` after ``wait`` seconds without a message, and at once
    when the client has been flagged ``overflowed`` (then it should catch up from the
    database, clear the flag, and go on).
    """

    def __init__(self, hub: Hub, channel: str, size: int) -> None:
        self.hub = hub
        self.channel = channel
        self.size = size
        self.buffer: deque[dict[str, Any]] = deque()
        self.overflowed = False
        self.joined = False  # reads the database next: flagged if the channel was not live
        self._wake = asyncio.Event()

    async def __aenter__(self) -> Subscription:
        await self.hub.join(self)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.hub.leave(self)

    @property
    def live(self) -> bool:
        """Subscribed: every message published from now on comes, or the flag is raised."""
        return self.hub.is_live(self.channel)

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the hub; never blocks. Past ``size`` messages, flag and drop."""
        if self.overflowed:
            return
        if len(self.buffer) >= self.size:
            self.flag()
            return
        self.buffer.append(message)
        self._wake.set()

    def flag(self) -> None:
        """Messages were missed: what is buffered is useless, the database has it all."""
        self.overflowed = True
        self.buffer.clear()
        self._wake.set()

    async def next(self, wait: float | None) -> dict[str, Any] | None:
        if not self.buffer and not self.overflowed:
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                return None
        if self.overflowed or not self.buffer:
            return None
        return self.buffer.popleft()

    def drain(self) -> None:
        self.buffer.clear()


@dataclass
class _Channel:
    clients: set[Subscription] = field(default_factory=set)
    # SUBSCRIBE/UNSUBSCRIBE sent on this connection and not yet answered: the channel
    # is live once none is, since the last command sent for a wanted channel subscribes.
    inflight: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    """The API process's one pub/sub connection (its Redis client name: ``aegir-hub-PID``)."""

    def __init__(self, url: str, timeout: float, size: int = CLIENT_BUFFER) -> None:
        # A client of its own: no health-check PING of redis-py's, which would read
        # the connection's replies from under the hub's reader.
        self.redis: Redis = Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            health_check_interval=0,
            client_name=f"aegir-hub-{os.getpid()}",
        )
        self.timeout = timeout
        self.size = size
        self.channels: dict[str, _Channel] = {}
        self.pubsub: PubSub | None = None
        self.lock = asyncio.Lock()  # one command at a time, in the order decided
        self.reader: asyncio.Task[None] | None = None
        self.readers = asyncio.Semaphore(READERS)

    def subscribe(self, channel: str) -> Subscription:
        """A subscription to ``channel``, live once entered (or as soon as Redis is)."""
        return Subscription(self, channel, self.size)

    def is_live(self, name: str) -> bool:
        channel = self.channels.get(name)
        return channel is not None and channel.live.is_set()

    def gated(self, opener: Callable[[], AbstractAsyncContextManager[T]]) -> Opener[T]:
        """``opener`` (a sessionmaker), entered by at most ``READERS`` clients at once."""

        @contextlib.asynccontextmanager
        async def gated_opener() -> AsyncIterator[T]:
            async with self.readers, opener() as opened:
                yield opened

        return gated_opener

    async def join(self, client: Subscription) -> None:
        """Add a client; the first of a channel subscribes. Waits (a bounded time) until
        the subscription is live, so that what the client reads from the database next
        overlaps what comes live: nothing falls in between."""
        if self.reader is None:
            self.reader = asyncio.create_task(self._read(), name="aegir-hub")
        channel = self.channels.setdefault(client.channel, _Channel())
        channel.clients.add(client)
        try:
            if len(channel.clients) == 1:
                channel.live.clear()
                await self._command("SUBSCRIBE", client.channel)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await channel.live.wait()
            client.joined = True
        except BaseException:
            await self.leave(client)  # a client gone while joining is not kept
            raise

    async def leave(self, client: Subscription) -> None:
        """Remove a client; the last of a channel unsubscribes."""
        channel = self.channels.get(client.channel)
        if channel is None or client not in channel.clients:
            return
        channel.clients.discard(client)
        if not channel.clients:
            channel.live.clear()
            await self._command("UNSUBSCRIBE", client.channel)
            self._forget(client.channel)

    async def aclose(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.redis.aclose()

    async def _command(self, verb: str, name: str) -> None:
        async with self.lock:
            pubsub = self.pubsub
            if pubsub is None or not _connected(pubsub):
                return  # the reader subscribes to every wanted channel once connected
            self.channels.setdefault(name, _Channel()).inflight += 1
            try:
                if verb == "SUBSCRIBE":
                    await pubsub.subscribe(name)
                else:
                    await pubsub.unsubscribe(name)
            except (RedisError, OSError):
                self.pubsub = None  # broken: the reader drops it and starts again

    def _forget(self, name: str) -> None:
        channel = self.channels.get(name)
        if channel is not None and not channel.clients and not channel.inflight:
            del self.channels[name]

    async def _read(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                await self._connect(pubsub)
                await self._pump(pubsub)
            except (RedisError, OSError) as error:
                log.warning("pub/sub connection lost (%s); connecting again", error)
            finally:
                await self._drop(pubsub)
            await asyncio.sleep(RETRY)

    async def _connect(self, pubsub: PubSub) -> None:
        await pubsub.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        async with self.lock:
            # Published first: a client joining meanwhile sends its own SUBSCRIBE.
            self.pubsub = pubsub
            for name in list(self.channels):
                self.channels[name].inflight = 0
                self._forget(name)
            wanted = list(self.channels)
            for name in wanted:
                self.channels[name].inflight = 1
            if wanted:
                await pubsub.subscribe(*wanted)

    async def _drop(self, pubsub: PubSub) -> None:
        async with self.lock:
            if self.pubsub is pubsub:
                self.pubsub = None
            for channel in self.channels.values():
                channel.live.clear()  # its clients are flagged once it is live again
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _pump(self, pubsub: PubSub) -> None:
        pinged = False
        while True:
            # redis-py would connect a dropped connection again by itself, and subscribe
            # behind the hub's back: the hub starts afresh instead.
            if self.pubsub is not pubsub or not _connected(pubsub):
                raise RedisConnectionError("the pub/sub connection was dropped")
            message = await pubsub.get_message(timeout=PING_EVERY)
            if message is not None:
                pinged = False
                self._dispatch(message)
            elif pinged:
                raise RedisConnectionError(f"no answer to a PING in {PING_EVERY} s")
            else:
                async with self.lock:
                    await pubsub.ping()
                pinged = True

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "pong":
            return
        name = message["channel"].decode()
        channel = self.channels.get(name)
        if channel is None:
            return
        if kind == "message":
            if channel.live.is_set():
                body = json.loads(message["data"])  # once, for every client
                for client in channel.clients:
                    client.deliver(body)
            return
        channel.inflight -= 1  # the answer to a SUBSCRIBE or UNSUBSCRIBE
        if channel.inflight == 0 and channel.clients:
            channel.live.set()
            # Clients past their join read the database while the channel was not live
            # (Redis was lost, or the hub's connection): what came meanwhile, they lack.
            for client in channel.clients:
                if client.joined:
                    client.flag()
        self._forget(name)


def _connected(pubsub: PubSub) -> bool:
    return pubsub.connection is not None and bool(pubsub.connection.is_connected)
