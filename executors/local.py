"""The local executor: one command on the control machine, from an argv list.

The command runs under a shepherd (``executors.spawner``: it dies with the worker,
and takes the command's whole tree with it), in its own process group and working
directory; stdout and stderr are streamed line by line as they come. Values reach it
as one argv element per placeholder, and in full (secrets included) in a JSON file named by
``$AEGIR_TASK_FILE``, readable by its owner only. A stdout line
``::output:: {"name": value}`` writes outputs back instead of being logged.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.catalog.inputs import plain_values
from executors import processes, spawner
from executors.base import (
    EXIT_CANCELLED,
    EXIT_TIMEOUT,
    Emitter,
    ExecutorUnavailable,
    TaskContext,
    write_outputs,
    write_private_json,
)

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\}")
_READ_SIZE = 1 << 16


def fill_argv(template: Sequence[str], context: TaskContext) -> list[str]:
    """Each ``{dotted.name}`` becomes text inside its own argv element, nothing more."""
    data = {
        "run": {"id": context.run_id, "attempt": context.attempt},
        "entity": context.entity.plain(),
        "values": plain_values(context.values),
        "tasks": context.plain_tasks(),
        "work_dir": str(context.work_dir),
    }
    return [_PLACEHOLDER.sub(lambda m: _lookup(data, m.group(1), context), arg) for arg in template]


def _lookup(data: dict[str, Any], dotted: str, context: TaskContext) -> str:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ExecutorUnavailable(f"the command refers to {{{dotted}}}, which has no value")
        value = value[part]
    if isinstance(value, SecretStr):
        raise ExecutorUnavailable(f"{{{dotted}}} is a secret; commands read secrets from a file")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ExecutorUnavailable(f"{{{dotted}}} is not a single value")
    text = str(value)
    if text and text in context.secrets:
        raise ExecutorUnavailable(f"{{{dotted}}} is a secret; commands read secrets from a file")
    return text


class LocalExecutor:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        argv = fill_argv(self.argv, context)
        cwd = context.work_dir / context.run_id
        cwd.mkdir(parents=True, exist_ok=True)
        if shutil.which(argv[0]) is None:
            raise ExecutorUnavailable(f"cannot start {argv[0]}: no such program")
        task_file = _write_task_file(cwd, context)
        try:
            process = await spawner.spawn(
                argv,
                record=processes.record_for(context),
                grace=context.cancel_grace,
                cwd=str(cwd),
                env=_environment(task_file, context),
            )
        except OSError as error:
            task_file.unlink(missing_ok=True)
            raise ExecutorUnavailable(f"cannot start {argv[0]}: {error.strerror}") from None
        try:
            return await _supervise(process, context, emit, cancel)
        finally:
            task_file.unlink(missing_ok=True)


def _write_task_file(cwd: Path, context: TaskContext) -> Path:
    path = cwd / f"task-{context.key}.json"
    payload = {
        "run_id": context.run_id,
        "task": context.key,
        "values": plain_values(context.values),
        "entity": context.entity.plain(),
        "tasks": context.plain_tasks(),
    }
    write_private_json(path, payload)
    return path


def _environment(task_file: Path, context: TaskContext) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        AEGIR_TASK_FILE=str(task_file),
        AEGIR_RUN_ID=context.run_id,
        AEGIR_TASK=context.key,
        PYTHONUNBUFFERED="1",
    )
    return env


async def _supervise(
    process: spawner.Command, context: TaskContext, emit: Emitter, cancel: asyncio.Event
) -> int:
    assert process.stdout is not None and process.stderr is not None
    pumps = asyncio.gather(
        _pump(process.stdout, "stdout", emit), _pump(process.stderr, "stderr", emit)
    )
    waiter = asyncio.ensure_future(process.wait())
    cancelled = asyncio.ensure_future(cancel.wait())
    done, _ = await asyncio.wait(
        {waiter, cancelled}, timeout=context.timeout, return_when=asyncio.FIRST_COMPLETED
    )
    cancelled.cancel()
    forced: int | None = None
    if waiter not in done:
        forced = EXIT_CANCELLED if cancel.is_set() else EXIT_TIMEOUT
        reason = "cancelled" if cancel.is_set() else f"timed out after {context.timeout:g}s"
        await emit.log("system", f"{reason}: stopping the command's process group")
        await processes.stop_group(process, context.cancel_grace)
    code = await waiter
    try:
        # Children left in the group may hold the pipes open after the leader exits.
        await asyncio.wait_for(asyncio.shield(pumps), context.cancel_grace)
    except TimeoutError:
        processes.signal_group(process.pid, signal.SIGKILL)
        await pumps
    if forced is not None:
        return forced
    return code if code >= 0 else 128 - code


async def _pump(reader: asyncio.StreamReader, stream: str, emit: Emitter) -> None:
    pending = b""
    while chunk := await reader.read(_READ_SIZE):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            await _line(raw, stream, emit)
    if pending:
        await _line(pending, stream, emit)


async def _line(raw: bytes, stream: str, emit: Emitter) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip("\r")
    if stream == "stdout" and await write_outputs(line, emit):
        return
    await emit.log(stream, line)
