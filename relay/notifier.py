"""The notifier: tells each team's targets (webhooks, e-mail) how its runs ended.

Off every run's path. It reads ended runs from the database (by ``finished_at``, from a
cursor all relays share), never from a message that a relay down at the time would
miss: a run that ended while every relay was down is notified once one is back. Lost
runs get their ``finished_at`` from the sweeper's settling, cancelled ones from the
cancel, so every ending is seen the same way.

Exactly once per (target, run, event) whatever the number of relays: each relay inserts
the delivery rows (UNIQUE) before anything is sent, then claims due rows with a fenced
UPDATE, so one relay sends each attempt. A relay that dies mid-send leaves its claim to
expire; another relay sends that attempt again, with the same ``X-Aegir-Delivery`` id
for the receiver to recognise it.

Each attempt is its own task with a timeout, at most ``notify_in_flight`` at a time: a
receiver that hangs holds one slot for one timeout, and nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope, utcnow
from app.dispatch import notifications as notify
from app.entities.notification import repository as deliveries
from app.entities.notification.models import NotificationDelivery, NotificationTarget
from app.entities.notification.repository import EndedRun
from relay.context import RelayContext

logger = logging.getLogger("aegir.notifier")

PAGE = 200
# Between full look-backs, each poll reads again this much before its last mark: the
# ends committed in the meantime with a slightly older ``finished_at``.
RECENT = timedelta(seconds=5)
FIRST_ID = uuid.UUID(int=0)


class Notifier:
    def __init__(self, ctx: RelayContext) -> None:
        self.ctx = ctx
        self.in_flight: set[asyncio.Task[None]] = set()
        # The newest run end this relay has read, and when it last read the whole
        # look-back (``_start``).
        self.mark: datetime | None = None
        self.deep_at = 0.0
        self.failing: float | None = None
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=ctx.settings.notify_in_flight),
        )

    async def run_forever(self) -> None:
        poll = self.ctx.settings.notify_poll.total_seconds()
        try:
            while True:
                await self.poll_once()
                await asyncio.sleep(poll)
        finally:
            await self.aclose()

    async def poll_once(self) -> None:
        """Never raises: a notifier that stopped would leave every target silent. A
        failure is logged when it begins (not once per poll) and when it ends."""
        try:
            await self.scan()
            await self.send_due()
        except (OSError, SQLAlchemyError) as error:
            if self.failing is None:
                logger.warning("notifier: %s; trying again every poll", error)
            self.failing = self.failing or time.monotonic()
            return
        except Exception:
            logger.exception("notifier: poll failed; trying again next poll")
            return
        if self.failing is not None:
            logger.warning("notifier: working again after %.1f s", time.monotonic() - self.failing)
            self.failing = None

    async def aclose(self) -> None:
        """Attempts in flight are dropped: their claims expire and are tried again."""
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        await self.client.aclose()

    async def scan(self) -> int:
        """Insert the delivery rows of runs that ended since the cursor: how many new."""
        async with session_scope(self.ctx.sessionmaker, writes=False) as session:
            cursor = await deliveries.cursor(session)
            targets = await deliveries.enabled_targets(session)
            if cursor is not None and targets:
                rows, newest = await self._new_rows(session, cursor, targets)
        if cursor is None:
            async with session_scope(self.ctx.sessionmaker) as session:
                await deliveries.start_cursor(session, utcnow())
            return 0
        if not targets:
            # Nobody to tell: no run is read, and the cursor keeps up (written rarely).
            rows, newest = [], utcnow() - self.ctx.settings.notify_lookback
            if newest - cursor < self.ctx.settings.notify_lookback:
                return 0
        if not rows and newest <= cursor:
            return 0  # nothing to write: no transaction at all
        async with session_scope(self.ctx.sessionmaker) as session:
            added = await deliveries.add_deliveries(session, rows)
            await deliveries.advance_cursor(session, newest)
        return added

    def _start(self, cursor: datetime) -> datetime:
        """Where this poll reads from. Every so often the whole look-back behind the shared
        cursor (a run's end committed late: a slow transaction, a relay storing a backlog
        of exit events); between, from a little before what this relay read last."""
        lookback = self.ctx.settings.notify_lookback
        now = time.monotonic()
        if self.mark is None or now - self.deep_at > lookback.total_seconds() / 4:
            self.deep_at = now
            return cursor - lookback
        return min(cursor, self.mark) - RECENT

    async def _new_rows(
        self, session: AsyncSession, cursor: datetime, targets: list[NotificationTarget]
    ) -> tuple[list[dict[str, object]], datetime]:
        """Rows for runs of the targets' teams that ended since ``_start``, leaving out
        pairs that have theirs; and the newest end seen."""
        since = max(self._start(cursor), min(t.created_at for t in targets))
        after, newest = (since, FIRST_ID), cursor
        teams = {target.team_id for target in targets}
        rows: list[dict[str, object]] = []
        while runs := await deliveries.ended_runs(session, after, PAGE, teams):
            rows += await self._rows_for(session, runs, targets)
            after = (runs[-1].finished_at, runs[-1].id)
            newest = max(newest, runs[-1].finished_at)
        self.mark = newest
        return rows, newest

    async def _rows_for(
        self, session: AsyncSession, runs: list[EndedRun], targets: list[NotificationTarget]
    ) -> list[dict[str, object]]:
        known = await deliveries.known_pairs(session, [run.id for run in runs])
        rows = notify.deliveries_for(runs, targets, self.ctx.settings.base_url)
        return [row for row in rows if (row["target_id"], row["run_id"]) not in known]

    async def send_due(self) -> int:
        """Claim due deliveries for the free slots and start each in its own task."""
        free = self.ctx.settings.notify_in_flight - len(self.in_flight)
        if free <= 0:
            return 0
        now = utcnow()
        async with session_scope(self.ctx.sessionmaker, writes=False) as session:
            due = await deliveries.due(session, now, free)
        if not due:
            return 0
        # Held past the attempt's own timeout; a relay gone meanwhile lets it expire.
        hold = self.ctx.settings.notify_timeout * 2 + timedelta(seconds=5)
        async with session_scope(self.ctx.sessionmaker) as session:
            claimed = await deliveries.claim(session, due, now, now + hold)
        for delivery, target in claimed:
            task = asyncio.create_task(self._attempt(delivery, target))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(claimed)

    async def _attempt(self, delivery: NotificationDelivery, target: NotificationTarget) -> None:
        outcome = await notify.deliver(
            self.ctx.settings, self.ctx.box, self.client, target, delivery
        )
        now = utcnow()
        state, next_at = notify.after_attempt(self.ctx.settings, outcome, delivery.attempts, now)
        try:
            async with session_scope(self.ctx.sessionmaker) as session:
                await deliveries.record_attempt(
                    session, delivery.id, outcome.as_try(now), state, next_at, now
                )
        except (OSError, SQLAlchemyError) as error:
            # Its claim expires and the attempt is made again: at least once.
            logger.warning("notifier: delivery %s: outcome not recorded (%s)", delivery.id, error)
            return
        if not outcome.ok:
            logger.info("notifier: delivery %s to %s: %s (%s)", delivery.id, target.name,
                        outcome.error, state)  # fmt: skip
