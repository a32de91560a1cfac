"""The in-process executor stops its coroutine at the task's timeout and on cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.catalog.fields import Slug
from app.catalog.inputs import EntityInput
from app.catalog.types import EntityKind, InProcess
from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, TaskContext
from executors.inprocess import InProcessExecutor
from tests.fixtures.catalog import AppFields, NoopFields, noop

KIND = EntityKind("testapp", "Test app", "testapps", AppFields, Slug)


class Collected:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def log(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    async def output(self, name: str, value: Any) -> None:
        raise AssertionError("the no-op task writes no output")


def _context(values: NoopFields, timeout: float, tmp_path: Path) -> TaskContext:
    entity = EntityInput("e", KIND, "app", "http://app", None, AppFields())
    return TaskContext(run_id="r", attempt=1, key="noop", task_type="test_noop", values=values,
                       entity=entity, tasks={}, work_dir=tmp_path, timeout=timeout,
                       cancel_grace=1.0)  # fmt: skip


async def test_the_timeout_stops_the_task(tmp_path: Path) -> None:
    emit = Collected()
    context = _context(NoopFields(lines=2, sleep=60), 0.2, tmp_path)
    code = await InProcessExecutor(InProcess(noop)).run(context, emit, asyncio.Event())
    assert code == EXIT_TIMEOUT
    assert emit.lines == [("stdout", "line 1"), ("stdout", "line 2"),
                          ("system", "timed out after 0.2s: the task was stopped")]  # fmt: skip


async def test_cancel_stops_the_task(tmp_path: Path) -> None:
    emit, cancel = Collected(), asyncio.Event()
    context = _context(NoopFields(lines=1, sleep=60), 30, tmp_path)
    running = asyncio.create_task(InProcessExecutor(InProcess(noop)).run(context, emit, cancel))
    await asyncio.sleep(0.05)
    cancel.set()
    assert await asyncio.wait_for(running, 5) == EXIT_CANCELLED
    assert emit.lines[-1] == ("system", "cancelled: the task was stopped")


async def test_the_exit_code_is_the_tasks(tmp_path: Path) -> None:
    emit = Collected()
    context = _context(NoopFields(lines=0, exit_code=3), 30, tmp_path)
    assert await InProcessExecutor(InProcess(noop)).run(context, emit, asyncio.Event()) == 3
    assert emit.lines == []
