"""The one seam every back-end implements: run one task, stream what happens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TaskContext:
    """Plain data about one task of one run: never ORM objects, never a shell string.

    ``entity`` is ``{id, kind, name, url, fields, references: {role: entity...}}``;
    ``values`` are this task's values (secrets in clear: pass them in files, not argv);
    ``tasks`` are every task of the entity, by key, with ``values``, ``outputs`` and
    ``refs`` (the entities its fields name, as plain data).
    """

    run_id: str
    attempt: int
    key: str
    task_type: str
    values: dict[str, Any]
    entity: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    work_dir: Path
    timeout: float
    cancel_grace: float
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # Steps of this run that succeeded before this task: what an undo task must remove.
    completed: tuple[str, ...] = ()


class Emitter(Protocol):
    """Where an executor reports what happens, as it happens."""

    async def log(self, stream: str, line: str) -> None: ...

    async def output(self, name: str, value: Any) -> None: ...


class Executor(Protocol):
    """Runs a task and answers its exit code; stops early when ``cancel`` is set."""

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int: ...


class ExecutorUnavailable(Exception):
    """The task's back-end cannot run here (not built yet, or not installed)."""


EXIT_UNAVAILABLE = 127
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130
