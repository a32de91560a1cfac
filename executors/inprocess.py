"""The in-process executor: a coroutine run inside the worker, with no subprocess.

What a command's run costs beyond its program's start (claim, lease, events, relay,
finish) is the same here; only the process is missing. Cancel and the timeout cancel
the coroutine, which stops at its next ``await``; its lines sent so far stay sent.
"""

from __future__ import annotations

import asyncio
import contextlib

from app.catalog.types import InProcess
from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, Emitter, TaskContext


class InProcessExecutor:
    def __init__(self, binding: InProcess) -> None:
        self.binding = binding

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        work = asyncio.ensure_future(self.binding.function(context.values, emit))
        stop = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait(
                {work, stop}, timeout=context.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        reason = "cancelled" if cancel.is_set() else f"timed out after {context.timeout:g}s"
        await emit.log("system", f"{reason}: the task was stopped")
        return EXIT_CANCELLED if cancel.is_set() else EXIT_TIMEOUT
