"""Executors (local and Ansible; Kubernetes next) behind ``executors.base.Executor``."""

from __future__ import annotations

from app.catalog.types import AnsibleRole, InProcess, LocalCommand, TaskType
from executors.ansible import AnsibleExecutor, SshAccess
from executors.base import Executor, ExecutorUnavailable
from executors.inprocess import InProcessExecutor
from executors.local import LocalExecutor


def executor_for(task: TaskType, ssh: SshAccess | None = None) -> Executor:
    """The executor of a task type; ``ssh``: the key and known hosts Ansible connects with."""
    binding = task.executor
    if isinstance(binding, LocalCommand):
        return LocalExecutor(binding.argv)
    if isinstance(binding, InProcess):
        return InProcessExecutor(binding)
    if isinstance(binding, AnsibleRole):
        return AnsibleExecutor(task.name, binding, ssh or SshAccess())
    raise ExecutorUnavailable(f"no executor for {binding!r}")
