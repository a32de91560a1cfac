"""The inventory and the extra variables of one task: the generic part.

Which machines a task runs on, and every variable its role reads about the hosting
model (``server``, ``platform``, ``site``, ``db``, ...), come from the catalogue: the
entity kind's ``AnsibleHosting`` and the task type's ``AnsibleRole.variables``, built
from the validated models. Here: how a host is reached, and the ``aegir`` block.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.catalog.inputs import InvalidInput, plain_values
from app.catalog.types import AnsibleRole, Host, Hosts
from executors.base import ExecutorUnavailable, TaskContext


@dataclass(frozen=True)
class SshAccess:
    """How Ansible reaches 'ssh' servers: Aegir's private key and its known hosts."""

    key: Path | None = None
    known_hosts: Path | None = None


_LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _host(host: Host, ssh: SshAccess) -> dict[str, Any]:
    if host.connection == "local":
        return dict(_LOCAL)
    found: dict[str, Any] = {
        "ansible_connection": "ssh",
        "ansible_host": host.address,
        "ansible_user": host.user,
        "ansible_port": host.port,
        "ansible_python_interpreter": host.python or "auto_silent",
    }
    if ssh.key is not None:
        found["ansible_ssh_private_key_file"] = str(ssh.key)
    if ssh.known_hosts is not None:
        found["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={ssh.known_hosts}"
    return found


def hosts_of(context: TaskContext) -> Hosts:
    """Where the entity's kind says its tasks run; the control machine if it says nothing."""
    hosting = context.entity.kind.ansible
    if hosting is None:
        return Hosts(None)
    try:
        return hosting.hosts(context.entity)
    except InvalidInput as error:
        raise ExecutorUnavailable(str(error)) from None


def inventory(hosts: Hosts, ssh: SshAccess) -> dict[str, Any]:
    """Groups ``target`` (where the role runs) and ``db`` (the site's database server)."""
    target = {"localhost": dict(_LOCAL)}
    if hosts.target is not None:
        target = {hosts.target.name: _host(hosts.target, ssh)}
    db = {hosts.db.name: _host(hosts.db, ssh)} if hosts.db is not None else {}
    return {"all": {"children": {"target": {"hosts": target}, "db": {"hosts": db}}}}


def variables(context: TaskContext, binding: AnsibleRole) -> dict[str, Any]:
    """The role's extra variables: ``aegir`` (the run and this task), ``values``, then
    what the entity's kind and the task's binding build from the typed input.

    Secrets stay ``SecretStr`` here; ``write_private_json`` reveals them into the file.
    """
    data: dict[str, Any] = {
        "aegir": {
            "run_id": context.run_id,
            "attempt": context.attempt,
            "task": context.key,
            "task_type": context.task_type,
            "completed": list(context.completed),
            "tasks": context.plain_tasks(),
            "entity": context.entity.plain(),
        },
        # This task's values; top-level, since ``aegir.values`` is a dict's method in Jinja.
        "values": plain_values(context.values),
    }
    hosting = context.entity.kind.ansible
    try:
        if hosting is not None:
            data.update(hosting.variables(context.view))
        if binding.variables is not None:
            data.update(binding.variables(context.view))
    except InvalidInput as error:
        raise ExecutorUnavailable(str(error)) from None
    return data
