"""Events of one run, in order, into the Redis Stream: batched, masked, never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.catalog.types import check_output
from app.events import EVENTS_STREAM, Event, ExitEvent, LogEvent, encode

logger = logging.getLogger(__name__)

MASK = "****"
BATCH_LINES = 500
# Events that come within FLUSH_EVERY of the last send wait that long to go with those
# after them (a command writing a long log); after a quiet spell the first goes at once
# (a run's first line is on its way to the user's screen).
FLUSH_EVERY = 0.002
QUIET = 0.02
# Past this many unsent events the executor waits: memory stays bounded if Redis is away.
MAX_PENDING = 20_000


class RunEmitter:
    """Numbers log lines, masks secrets, and sends events in the order they happened."""

    def __init__(
        self, redis: Redis, run_id: str, attempt: int, first_seq: int, secrets: tuple[str, ...]
    ) -> None:
        self.redis = redis
        self.run_id = run_id
        self.attempt = attempt
        self.first_seq = first_seq
        self.seq = first_seq - 1
        # Longest first, so that a secret containing another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self.pending: list[Event] = []
        self.pending_lines = 0
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()
        self._closed = False
        self._sent_at = 0.0
        self._flusher = asyncio.create_task(self._flush_loop())

    def mask(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line

    async def log(self, stream: str, line: str) -> None:
        self.seq += 1
        entry = (self.seq, stream, self.mask(line), time.time())
        last = self.pending[-1] if self.pending else None
        if last is not None and last["t"] == "log" and len(last["lines"]) < BATCH_LINES:
            last["lines"].append(entry)
        else:
            self.pending.append(
                LogEvent(t="log", run=self.run_id, attempt=self.attempt, lines=[entry])
            )
        self.pending_lines += 1
        self._wake.set()
        if self.pending_lines >= MAX_PENDING:
            await self._wait_sent()

    def event(self, event: Event) -> None:
        self.pending.append(event)
        self._wake.set()

    async def exit(self, status: str, code: int) -> None:
        self.event(
            ExitEvent(
                t="exit",
                run=self.run_id,
                attempt=self.attempt,
                status=status,
                code=code,
                first_seq=self.first_seq,
                last_seq=self.seq,
                at=time.time(),
            )
        )

    async def close(self) -> None:
        """Send everything still pending, then stop."""
        self._closed = True
        self._wake.set()
        await self._flusher

    async def _wait_sent(self) -> None:
        self._sent.clear()
        await self._sent.wait()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if time.monotonic() - self._sent_at < QUIET:
                await asyncio.sleep(FLUSH_EVERY)  # gather a batch
            else:
                await asyncio.sleep(0)  # what the executor has ready goes along
            await self._flush()
            self._sent_at = time.monotonic()
            if self._closed and not self.pending:
                return

    async def _flush(self) -> None:
        delay = 0.05
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for event in batch:
                        pipe.xadd(EVENTS_STREAM, encode(event))  # type: ignore[arg-type]
                    await pipe.execute()
            except (RedisError, OSError) as error:
                # Keep them, in order, and try again: Redis may be restarting.
                self.pending = batch + self.pending
                logger.warning("run %s: events not sent (%s); retrying", self.run_id, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.pending_lines = sum(len(e["lines"]) for e in self.pending if e["t"] == "log")
            self._sent.set()


class TaskEmitter:
    """What an executor sees: its log lines, and outputs checked against ``Outputs``."""

    def __init__(
        self,
        run: RunEmitter,
        key: str,
        task_type: str,
        outputs: type[BaseModel],
        written: dict[str, Any] | None = None,
    ) -> None:
        self.run = run
        self.key = key
        self.task_type = task_type
        self.outputs = outputs
        # Accepted outputs, also kept here: later steps of the run read them at once.
        self.written: dict[str, Any] = {} if written is None else written

    async def log(self, stream: str, line: str) -> None:
        await self.run.log(stream, line)

    async def output(self, name: str, value: Any) -> None:
        try:
            dumped = check_output(self.outputs, name, value)
        except ValueError as error:
            await self.run.log(
                "system",
                f"refused output of task {self.key} (task type {self.task_type}): {error}",
            )
            return
        self.written[name] = dumped
        self.run.event(
            {"t": "output", "run": self.run.run_id, "attempt": self.run.attempt,
             "task": self.key, "name": name, "value": dumped}
        )  # fmt: skip


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
