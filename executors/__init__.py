"""Executors (local now; Ansible and Kubernetes next) behind ``executors.base.Executor``."""

from __future__ import annotations

import asyncio

from app.catalog.types import AnsibleRole, LocalCommand, TaskType
from executors.base import Emitter, Executor, ExecutorUnavailable, TaskContext
from executors.local import LocalExecutor


class Unavailable:
    """Stands for a back-end not built yet, so that its tasks fail with a clear reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        raise ExecutorUnavailable(self.reason)


def executor_for(task: TaskType) -> Executor:
    binding = task.executor
    if isinstance(binding, LocalCommand):
        return LocalExecutor(binding.argv)
    if isinstance(binding, AnsibleRole):
        return Unavailable(
            f"task {task.name} runs the Ansible role {task.name}, and the Ansible executor "
            "is not built yet"
        )
    raise ExecutorUnavailable(f"no executor for {binding!r}")
