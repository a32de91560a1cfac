"""The relay process: stream events into the database, then tell subscribers.

Events are acknowledged only after the database commit, so a relay killed in between
finds them again in its pending list (or another relay claims them), and the
idempotent insert (unique run id + seq) stores each line once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterable

from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError

from app.catalog.registry import catalog_with
from app.config import Settings
from app.db import create_engine, create_sessionmaker, session_scope
from app.dispatch.queueing import next_runs
from app.events import EVENTS_STREAM, RELAY_GROUP, Event, decode, publish, send_events
from app.queue import QueueClient, create_redis, enqueue_run, release_run
from app.security.crypto import SecretBox
from app.unavailable import database_unreachable
from relay import store
from relay.batches import BatchDriver
from relay.context import RelayContext
from relay.notifier import Notifier
from relay.schedules import Scheduler
from relay.sweeper import Sweeper

logger = logging.getLogger("aegir.relay")

# Entries per transaction (each holds up to 500 lines, so at most 10,000 lines):
# short enough that SQLite's single write lock is never held long against worker
# heartbeats and API writes (a heartbeat that waits too long loses its lease).
READ_COUNT = 20
BLOCK_MS = 1000
# After a full batch on SQLite, while a backlog drains (a Redis restart, a long log):
# a pause that lets the others' writes in. SQLite's busy handler retries on its own
# schedule (up to 100 ms apart), and a relay that takes the lock again at once can
# starve a worker's heartbeat until its lease runs out. The pause lasts as long as the
# batch held the lock (the lock is free at least half the time, so a waiter polling
# every 100 ms gets in within a few tries), between these bounds.
SQLITE_YIELD = 0.1
SQLITE_MIN_YIELD = 0.02

Entry = tuple[bytes, dict[bytes, bytes]]


class Relay:
    def __init__(self, ctx: RelayContext) -> None:
        self.ctx = ctx
        # Fault injection for the tests: die after the Nth commit, before acknowledging.
        self.exit_after_commits = int(os.environ.get("AEGIR_FAULT_RELAY_EXIT_AFTER_COMMITS", "0"))
        self.outage = Outage()
        self.redis_outage = Outage()
        self.sweep_outage = Outage()
        # Set when a sweep could not reach the database; once it is back, no lease is
        # settled before ``hold_until`` (see ``_may_sweep``).
        self.blind = False
        self.hold_until = 0.0

    async def ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.ctx.redis.xgroup_create(EVENTS_STREAM, RELAY_GROUP, id="0", mkstream=True)

    async def consume(self) -> None:
        """Our own pending entries first (a restart), then new ones, then orphans."""
        backlog = True
        while True:
            try:
                await self.ensure_group()
                entries = await self._read("0" if backlog else ">")
                if backlog and not entries:
                    backlog = False
                    entries = await self._claim_orphans()
                if entries:
                    began = time.monotonic()
                    await self.handle(entries)
                    self.outage.ended("relay: events stored again")
                    if len(entries) == READ_COUNT and self.ctx.settings.is_sqlite:
                        held = time.monotonic() - began
                        await asyncio.sleep(min(max(held, SQLITE_MIN_YIELD), SQLITE_YIELD))
                self.redis_outage.ended("relay: Redis back")
            except (RedisError, OSError, SQLAlchemyError) as error:
                # Nothing was acknowledged: the entries stay pending, read again from "0".
                backlog = True
                await asyncio.sleep(self._failed(error))

    def _failed(self, error: Exception) -> float:
        """Say why (once per outage, not once per retry); the seconds to wait."""
        if database_unreachable(error):
            return self.outage.began(f"relay: database unreachable ({error}); events stay pending")
        if isinstance(error, SQLAlchemyError):
            logger.exception("relay: database write failed; the events stay pending")
            return 1.0
        return self.redis_outage.began(f"relay: Redis unavailable ({error}); retrying")

    async def _read(self, start: str) -> list[Entry]:
        block = None if start == "0" else BLOCK_MS
        reply = await self.ctx.redis.xreadgroup(
            RELAY_GROUP, self.ctx.name, {EVENTS_STREAM: start}, count=READ_COUNT, block=block
        )
        if not reply:
            return []
        entries: list[Entry] = reply[0][1]
        return entries

    async def _claim_orphans(self) -> list[Entry]:
        """Entries another relay read and never acknowledged (it died)."""
        reply = await self.ctx.redis.xautoclaim(
            EVENTS_STREAM,
            RELAY_GROUP,
            self.ctx.name,
            int(self.ctx.settings.relay_claim_idle.total_seconds() * 1000),
            "0-0",
            count=READ_COUNT,
        )
        entries: list[Entry] = reply[1]
        return entries

    async def handle(self, entries: list[Entry]) -> None:
        events: list[Event] = [decode(fields) for _id, fields in entries if fields]
        applied = store.Applied()
        to_enqueue: list[uuid.UUID] = []
        async with session_scope(self.ctx.sessionmaker) as session:
            applied = await store.apply(session, self.ctx.catalog, events)
            to_enqueue = await next_runs(session, applied.finished_entities)
        if self.exit_after_commits:
            self.exit_after_commits -= 1
            if not self.exit_after_commits:
                logger.error("relay: fault injected: exiting between commit and acknowledgement")
                os._exit(70)
        if applied.refused:
            logger.info("relay: refused %d events of stale attempts", applied.refused)
        ids = [entry_id for entry_id, _ in entries]
        async with self.ctx.redis.pipeline(transaction=False) as pipe:
            pipe.xack(EVENTS_STREAM, RELAY_GROUP, *ids)
            pipe.xdel(EVENTS_STREAM, *ids)
            for channel, message in applied.messages:
                pipe.publish(channel, message)
            await pipe.execute()
        await _enqueue(self.ctx.redis, to_enqueue)

    async def sweep_forever(self) -> None:
        interval = self.ctx.settings.sweep_interval.total_seconds()
        sweeper = Sweeper(self.ctx.sessionmaker, self.ctx.catalog, self.ctx.settings)
        while True:
            try:
                if await self._may_sweep():
                    await self._sweep(sweeper)
                self.sweep_outage.ended("relay: sweeping again")
            except (RedisError, OSError, SQLAlchemyError) as error:
                if database_unreachable(error):
                    self.blind = True
                    self.sweep_outage.began(f"relay: sweep failed ({error}); until it is back")
                else:
                    logger.warning("relay: sweep failed (%s); next time", error)
            await asyncio.sleep(interval)

    async def _may_sweep(self) -> bool:
        """No lease is settled until live workers had one lease to renew theirs after a
        database outage: while it lasted they could not renew, and expired leases then
        say nothing about which workers are gone."""
        loop = asyncio.get_running_loop()
        if self.blind:
            async with self.ctx.sessionmaker() as session:
                await session.connection()  # raises while the database is still away
            self.blind = False
            lease = self.ctx.settings.run_lease.total_seconds()
            self.hold_until = loop.time() + lease
            logger.warning("relay: database back; settling no lease for %.0f s", lease)
        return loop.time() >= self.hold_until

    async def _sweep(self, sweeper: Sweeper) -> None:
        swept = await sweeper.sweep()
        for run_id in swept.release:
            await release_run(self.ctx.redis, run_id)
        await publish(self.ctx.redis, swept.messages)
        # After the lost attempt's own lines: the relay closes its log, then enqueues
        # the run again if it was requeued.
        await send_events(self.ctx.redis, swept.lost)
        await _enqueue(self.ctx.redis, swept.enqueue)


class Outage:
    """Retries while the database (or Redis) is away: logged when that begins and ends."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = 0.0

    def began(self, message: str) -> float:
        """The seconds to wait before the next try."""
        if self.since is None:
            self.since = time.monotonic()
            self.delay = 0.25
            logger.warning(message)
        self.delay = min(self.delay * 2, 2.0)
        return self.delay

    def ended(self, message: str) -> None:
        if self.since is not None:
            logger.warning("%s after %.1f s", message, time.monotonic() - self.since)
            self.since = None


async def _enqueue(redis: QueueClient, run_ids: Iterable[uuid.UUID]) -> None:
    for run_id in run_ids:
        await enqueue_run(redis, run_id)


async def serve_relay(settings: Settings) -> None:
    engine = create_engine(settings.database_url, settings)
    redis = create_redis(settings.redis_url, settings.redis_timeout.total_seconds())
    ctx = RelayContext(
        settings,
        catalog_with(tuple(settings.catalog_modules)),
        create_sessionmaker(engine),
        redis,
        SecretBox(settings.secret_key),
        settings.relay_name or f"relay-{socket.gethostname()}-{os.getpid()}",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    relay = Relay(ctx)
    tasks = [
        asyncio.create_task(relay.consume()),
        asyncio.create_task(relay.sweep_forever()),
        asyncio.create_task(Notifier(ctx).run_forever()),
        asyncio.create_task(BatchDriver(ctx).run_forever()),
        asyncio.create_task(Scheduler(ctx).run_forever()),
    ]
    logger.info("relay %s ready", ctx.name)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await redis.aclose()
    await engine.dispose()
