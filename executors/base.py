"""The one seam every back-end implements: run one task, stream what happens."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from app.catalog.inputs import AcmeSettings, EntityInput, TaskInput, TaskView
from app.catalog.types import TaskFields


@dataclass(frozen=True)
class TaskContext:
    """One task of one run, typed by the catalogue: never ORM objects, never a shell string.

    ``entity``: the entity, its fields as its kind's validated model, with the entities
    it references (site -> platform -> server) in the same form. ``tasks``: every task
    of the entity, by key, with ``values`` and ``outputs`` as its type's models and
    ``refs`` (the entities its fields name). ``values``: this task's values. Secrets are
    ``SecretStr``: a back-end reveals them only into a file its owner alone can read
    (``write_private_json``), never into argv.
    """

    run_id: str
    attempt: int
    key: str
    task_type: str
    values: TaskFields
    entity: EntityInput
    tasks: Mapping[str, TaskInput]
    work_dir: Path
    timeout: float
    cancel_grace: float
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # Steps of this run that succeeded before this task: what an undo task must remove.
    completed: tuple[str, ...] = ()
    # The operator's ACME settings: the certificate roles read them.
    acme: AcmeSettings = field(default_factory=AcmeSettings)

    @property
    def view(self) -> TaskView:
        """What the catalogue's variables builders read."""
        return TaskView(self.key, self.entity, self.tasks, self.acme)

    def plain_tasks(self) -> dict[str, dict[str, Any]]:
        """Every task in its JSON form, by key; secrets still ``SecretStr``."""
        return {key: task.plain() for key, task in self.tasks.items()}


def write_private_json(path: Path, data: Any) -> None:
    """``data`` as JSON in a file only its owner can read; the one place secrets are revealed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, default=_reveal)


def _reveal(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"{type(value).__name__} is not JSON")


class Emitter(Protocol):
    """Where an executor reports what happens, as it happens."""

    async def log(self, stream: str, line: str) -> None: ...

    async def output(self, name: str, value: Any) -> None: ...


class Executor(Protocol):
    """Runs a task and answers its exit code; stops early when ``cancel`` is set."""

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int: ...


class ExecutorUnavailable(Exception):
    """The task's back-end cannot run here (not built yet, or not installed)."""


# A line a command prints to write its task's outputs: the marker, then a JSON object.
OUTPUT_MARKER = "::output:: "


async def write_outputs(line: str, emit: Emitter) -> bool:
    """``True`` if ``line`` was an output line (its values written, or why not said);
    ``False``: an ordinary line, for the caller to log."""
    if not line.startswith(OUTPUT_MARKER):
        return False
    try:
        outputs = json.loads(line[len(OUTPUT_MARKER) :])
    except json.JSONDecodeError:
        await emit.log("system", f"not valid JSON after {OUTPUT_MARKER.strip()}: {line}")
        return True
    if not isinstance(outputs, dict):
        await emit.log("system", f"{OUTPUT_MARKER.strip()} needs a JSON object")
        return True
    for name, value in outputs.items():
        await emit.output(str(name), value)
    return True


EXIT_UNAVAILABLE = 127
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130
