"""The batch executor (``BatchOf``) on its own: one line per item as it ends, the summary,
the exit code, and cancel. Its ``Fleet`` here is an in-memory stand-in that plays a
batch's progress; the worker's real one runs in tests/batches/test_upgrade_run.py and
tests/hosting/test_upgrade.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.catalog.fields import Slug
from app.catalog.inputs import EntityInput, TaskView
from app.catalog.types import BatchOf, BatchPlan, EntityKind
from executors import batch as batch_executor
from executors.base import EXIT_CANCELLED, TaskContext
from executors.batch import BatchExecutor, BatchState, ItemState
from tests.fixtures.catalog import AppFields, NoopFields

KIND = EntityKind("testapp", "Test app", "testapps", AppFields, Slug)
PHRASES = {"succeeded": "moved", "failed": "rolled back", "skipped": "skipped"}


def _plan(_view: TaskView) -> BatchPlan:
    return BatchPlan("site", "migrate", "platform", {}, phrases=PHRASES)


class Collected:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.outputs: dict[str, Any] = {}

    async def log(self, stream: str, line: str) -> None:
        self.lines.append(line)

    async def output(self, name: str, value: Any) -> None:
        self.outputs[name] = value


class PlayedFleet:
    """A batch whose items move one step each time it is looked at."""

    def __init__(self, steps: list[list[tuple[str, str | None]]]) -> None:
        self.steps = steps
        self.looked = 0
        self.cancelled = False
        self.started: list[str] = []

    async def start(self, run_id: str, entity_id: str, plan: BatchPlan) -> str:
        self.started.append(run_id)
        return "b1"

    async def state(self, batch_id: str) -> BatchState:
        if self.cancelled:
            items = [ItemState(f"s{n}", "cancelled", "the batch was cancelled") for n in range(2)]
            return BatchState(batch_id, "cancelled", True, items, None)
        step = self.steps[min(self.looked, len(self.steps) - 1)]
        self.looked += 1
        items = [ItemState(f"s{n}", status, why) for n, (status, why) in enumerate(step)]
        return BatchState(batch_id, "running", self.looked >= len(self.steps), items, None)

    async def cancel(self, batch_id: str) -> None:
        self.cancelled = True


def _context(tmp_path: Path) -> TaskContext:
    entity = EntityInput("p1", KIND, "old", "http://old", None, AppFields())
    return TaskContext(run_id="r1", attempt=1, key="upgrade", task_type="platform_upgrade",
                       values=NoopFields(), entity=entity, tasks={}, work_dir=tmp_path,
                       timeout=60, cancel_grace=1.0)  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_executor, "POLL", 0.01)


async def test_each_item_is_logged_once_as_it_ends_then_the_summary(tmp_path: Path) -> None:
    fleet = PlayedFleet([
        [("running", None), ("pending", None), ("skipped", "disabled")],
        [("succeeded", None), ("running", None), ("skipped", "disabled")],
        [("succeeded", None), ("failed", "its run failed (exit code 2)"), ("skipped", "disabled")],
    ])  # fmt: skip
    emit = Collected()
    code = await BatchExecutor(BatchOf(_plan), fleet).run(_context(tmp_path), emit, asyncio.Event())
    assert code == 1  # a site was rolled back
    assert emit.lines[1:] == [
        "s2: skipped: disabled",
        "s0: moved",
        "s1: rolled back: its run failed (exit code 2)",
        "summary: 1 moved, 1 rolled back, 1 skipped",
    ]
    assert emit.outputs == {"batch": "b1", "succeeded": 1, "failed": 1, "skipped": 1,
                            "cancelled": 0}  # fmt: skip


async def test_cancel_cancels_the_batch_and_waits_for_it(tmp_path: Path) -> None:
    fleet = PlayedFleet([[("running", None), ("pending", None)]] * 1000)
    emit, cancel = Collected(), asyncio.Event()
    running = asyncio.create_task(
        BatchExecutor(BatchOf(_plan), fleet).run(_context(tmp_path), emit, cancel)
    )
    await asyncio.sleep(0.05)
    cancel.set()
    assert await asyncio.wait_for(running, 5) == EXIT_CANCELLED
    assert fleet.cancelled
    assert "cancelling the batch: no more items start" in emit.lines
    assert emit.lines[-1] == "summary: 0 moved, 0 rolled back, 0 skipped, 2 cancelled"
