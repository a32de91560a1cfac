"""The batch executor: a task whose run drives a batch of other runs (``BatchOf``).

The task's run starts the batch through a ``Fleet`` (the worker's door to the batch
machinery: this package touches no database), then follows it: one log line per item
as it ends, and the summary as the last line and as outputs. A new attempt of the same
run (its worker was lost) finds the batch it started and follows it on, so the task is
safe to run again. Cancelling the run cancels the batch and waits for its items.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

from app.catalog.types import BatchOf, BatchPlan
from executors.base import EXIT_CANCELLED, Emitter, TaskContext

POLL = 1.0
ENDED = ("succeeded", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class ItemState:
    name: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class BatchState:
    id: str
    status: str
    finished: bool
    items: list[ItemState]
    summary: str | None


class Fleet(Protocol):
    """Starts and follows batches for a run; implemented by the worker."""

    async def start(self, run_id: str, entity_id: str, plan: BatchPlan) -> str:
        """The id of the batch this run started (started now, or by an earlier attempt)."""
        ...

    async def state(self, batch_id: str) -> BatchState: ...

    async def cancel(self, batch_id: str) -> None: ...


class BatchExecutor:
    def __init__(self, binding: BatchOf, fleet: Fleet) -> None:
        self.binding = binding
        self.fleet = fleet

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        plan = self.binding.plan(context.view)
        batch_id = await self.fleet.start(context.run_id, context.entity.id, plan)
        await emit.log("system", f"batch {batch_id}: {plan.operation} on every {plan.kind} "
                       f"of {context.entity.kind.name} {context.entity.name}")  # fmt: skip
        told: set[str] = set()
        cancelled = False
        while True:
            state = await self.fleet.state(batch_id)
            await self._tell(state, plan, told, emit)
            if state.finished:
                break
            if cancel.is_set() and not cancelled:
                await emit.log("system", "cancelling the batch: no more items start")
                await self.fleet.cancel(batch_id)
                cancelled = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until(cancel, cancelled), POLL)
        return await self._end(state, plan, emit, cancelled)

    async def _tell(
        self, state: BatchState, plan: BatchPlan, told: set[str], emit: Emitter
    ) -> None:
        """One line per item that has ended since the last look."""
        for item in state.items:
            if item.status in ENDED and item.name not in told:
                told.add(item.name)
                phrase = plan.phrases.get(item.status, item.status)
                why = f": {item.reason}" if item.reason and item.status != "succeeded" else ""
                await emit.log("stdout", f"{item.name}: {phrase}{why}")

    async def _end(self, state: BatchState, plan: BatchPlan, emit: Emitter, cancelled: bool) -> int:
        counts = {status: 0 for status in ENDED}
        for item in state.items:
            counts[item.status] = counts.get(item.status, 0) + 1
        words = ", ".join(
            f"{n} {plan.phrases.get(status, status)}"
            for status, n in counts.items()
            if n or status in plan.phrases
        )
        await emit.log("stdout", f"summary: {words or 'nothing to do'}")
        await emit.output("batch", state.id)
        for status, n in counts.items():
            await emit.output(status, n)
        if cancelled:
            return EXIT_CANCELLED
        return 1 if counts["failed"] or counts["cancelled"] else 0


async def _until(cancel: asyncio.Event, cancelled: bool) -> None:
    """Wake at once on a cancel not acted on yet; else sleep the whole poll."""
    if cancelled:
        await asyncio.sleep(POLL)
    else:
        await cancel.wait()
