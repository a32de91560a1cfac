"""Executors (local, Ansible and Kubernetes) behind ``executors.base.Executor``."""

from __future__ import annotations

from app.catalog.types import (
    AnsibleRole,
    BatchOf,
    InProcess,
    KubernetesStep,
    LocalCommand,
    TaskType,
)
from executors.ansible import AnsibleExecutor, SshAccess
from executors.ansible.direct import DirectExecutor
from executors.base import Executor, ExecutorUnavailable
from executors.batch import BatchExecutor, Fleet
from executors.inprocess import InProcessExecutor
from executors.kubernetes.executor import KubernetesExecutor
from executors.local import LocalExecutor


def executor_for(
    task: TaskType, ssh: SshAccess | None = None, action: bool = False, fleet: Fleet | None = None
) -> Executor:
    """The executor of a task type; ``ssh``: the key and known hosts Ansible connects with.

    ``fleet``: the worker's door to batches, for a task that drives one (``BatchOf``).
    ``action``: the task answers a waiting request. Its role then runs without
    ansible-playbook when it can (``DirectExecutor``; runs keep the playbook's log).
    """
    binding = task.executor
    if isinstance(binding, LocalCommand):
        return LocalExecutor(binding.argv)
    if isinstance(binding, InProcess):
        return InProcessExecutor(binding)
    if isinstance(binding, AnsibleRole):
        playbook = AnsibleExecutor(task.name, binding, ssh or SshAccess())
        if action:
            return DirectExecutor(task.name, binding, ssh or SshAccess(), playbook)
        return playbook
    if isinstance(binding, BatchOf):
        if fleet is None:
            raise ExecutorUnavailable("a batch runs only as a run's task, in a worker")
        return BatchExecutor(binding, fleet)
    if isinstance(binding, KubernetesStep):
        return KubernetesExecutor(binding.step)
    raise ExecutorUnavailable(f"no executor for {binding!r}")
