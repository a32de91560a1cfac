"""The scheduler: every relay runs one, so two relays are two schedulers.

Each pass reads every schedule with its latest recorded slot, plans the slots due
since (``app.dispatch.schedules.plan``) and records each in a transaction of its own
with the run it starts. Two schedulers that plan the same slot both try; the unique
(schedule_id, slot_at) lets one through, and the other's transaction does nothing.
Then it starts the prune runs that retention asks for after successful backups.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app import clock
from app.db import session_scope
from app.dispatch import schedules as service
from app.entities.schedule import repository as schedules
from app.entities.schedule.models import Schedule
from app.errors import AegirError
from relay.context import RelayContext

logger = logging.getLogger("aegir.schedules")

# Backups older than this (in schedule time) are not looked at for retention: their
# prune run was started long ago, or never will be.
PRUNE_LOOKBACK = timedelta(days=2)


class Scheduler:
    def __init__(self, ctx: RelayContext) -> None:
        self.ctx = ctx

    async def run_forever(self) -> None:
        interval = self.ctx.settings.schedule_tick.total_seconds()
        failing = False
        while True:
            try:
                await self.tick()
            except (RedisError, OSError, SQLAlchemyError) as error:
                # Nothing is lost: the slots are still due, and recorded next time (or
                # found missed, if that is past the grace window). Said once per outage.
                if not failing:
                    logger.warning("scheduler: pass failed (%s); retrying", error)
                failing = True
            else:
                if failing:
                    logger.warning("scheduler: passes succeed again")
                failing = False
            await asyncio.sleep(interval)

    async def tick(self) -> int:
        """One pass; the number of slots this scheduler recorded."""
        async with session_scope(self.ctx.sessionmaker, writes=False) as session:
            due = await schedules.with_last_slot(session)
        now = clock.now()
        recorded = 0
        for schedule, last in due:
            for slot in service.plan(schedule, last, now, self.ctx.settings.schedule_grace):
                recorded += await self._record(schedule, slot)
        await self._prune(now)
        return recorded

    async def _record(self, schedule: Schedule, slot: service.Slot) -> int:
        ctx = self.ctx
        async with session_scope(ctx.sessionmaker) as session:
            slot_id = await service.record_slot(
                session, ctx.catalog, ctx.redis, ctx.box, schedule, slot, ctx.name
            )
        if slot_id is not None:
            logger.info("schedule %s: slot %s %s", schedule.name, slot.at, slot.outcome)
        return slot_id is not None

    async def _prune(self, now: datetime) -> None:
        ctx = self.ctx
        async with session_scope(ctx.sessionmaker, writes=False) as session:
            pending = await schedules.to_prune(session, now - PRUNE_LOOKBACK)
        for schedule, slot_id in pending:
            try:
                async with session_scope(ctx.sessionmaker) as session:
                    await service.start_prune(
                        session, ctx.catalog, ctx.redis, ctx.box, schedule, slot_id
                    )
            except service.AlreadyPruned:
                continue
            except AegirError as error:
                logger.warning("schedule %s: prune not started: %s", schedule.name, error)
