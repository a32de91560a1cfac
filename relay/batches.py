"""The batch driver, run by every relay process: it moves batches along.

Each pass reads the unfinished batches and advances each in a transaction of its own
(``app.dispatch.batch_progress.advance``); several relays may run it at once, as the
step holds the batch's row and moves items by conditional updates. A pass runs every
``INTERVAL`` seconds, and at once when a run's final status is published (the events
only wake the driver: what it does is read from the database, the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.db import session_scope
from app.dispatch.batch_progress import advance
from app.entities.batch import repository as batches
from app.entities.run.states import FINAL
from app.events import STATUS_CHANNEL
from relay.context import RelayContext

logger = logging.getLogger("aegir.relay.batches")

INTERVAL = 2.0


class BatchDriver:
    def __init__(self, ctx: RelayContext) -> None:
        self.ctx = ctx
        self.services = ctx.services
        self.wake = asyncio.Event()

    async def run_forever(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                self.wake.clear()
                try:
                    await self.step()
                except (RedisError, OSError, SQLAlchemyError) as error:
                    logger.warning("batches: pass failed (%s); next time", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), INTERVAL)
        finally:
            listener.cancel()

    async def step(self) -> int:
        """One pass over the unfinished batches: how many moved."""
        async with session_scope(self.ctx.sessionmaker, writes=False) as session:
            ids = await batches.unfinished(session)
        moved = 0
        for batch_id in ids:
            try:
                moved += await self._advance(batch_id)
            except (RedisError, OSError, SQLAlchemyError):
                raise  # the database or Redis is away: the whole pass waits
            except Exception:
                # A bug or a catalogue that changed under the batch: this batch's step is
                # rolled back and tried again next pass; the others go on.
                logger.exception("batches: batch %s could not be advanced", batch_id)
        return moved

    async def _advance(self, batch_id: uuid.UUID) -> bool:
        async with session_scope(self.ctx.sessionmaker) as session:
            return await advance(session, self.services, batch_id)

    async def _listen(self) -> None:
        """Wake on a run's final status, or a batch's change; retry if Redis goes away."""
        while True:
            try:
                async with self.services.redis.pubsub() as pubsub:
                    await pubsub.subscribe(STATUS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and _wakes(message["data"]):
                            self.wake.set()
            except (RedisError, OSError) as error:
                logger.info("batches: status feed lost (%s); polling meanwhile", error)
                await asyncio.sleep(INTERVAL)


def _wakes(data: bytes | str) -> bool:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and (
        body.get("status") in FINAL or ("batch" in body and body.get("status") == "running")
    )
