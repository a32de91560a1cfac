"""Run one task as a one-role playbook through ansible-runner, streaming its events.

The role comes from the roles directory its binding names (a plugin ships its own), with
this back-end's built-in directory after it on the roles path, for shared roles.

ansible-runner drives ``ansible-playbook`` in a thread of its own; its event callback
hands each event to the event loop as it happens, so log lines reach the relay while
the playbook runs. Values reach the role as extra variables from a file (mode 0600,
removed afterwards), never through a shell. Roles write back with the ``aegir_output``
action, only into the fields their task type declares (the emitter checks).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.catalog.types import AnsibleRole
from executors import processes
from executors.ansible import forks
from executors.ansible.variables import SshAccess, hosts_of, inventory, variables
from executors.base import (
    EXIT_CANCELLED,
    EXIT_TIMEOUT,
    Emitter,
    ExecutorUnavailable,
    TaskContext,
    write_private_json,
)

HERE = Path(__file__).resolve().parent
ROLES_DIR = HERE / "roles"
ACTION_PLUGINS = HERE / "action_plugins"
# How often ansible-runner looks at the cancel flag while the playbook is quiet.
POLL = 0.25
_END = object()


class AnsibleExecutor:
    """Runs the role named ``role`` from ``binding.roles`` (the built-in roles if unset)."""

    def __init__(self, role: str, binding: AnsibleRole, ssh: SshAccess) -> None:
        self.role = role
        self.binding = binding
        self.ssh = ssh
        self.roles = binding.roles or ROLES_DIR

    async def run(self, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
        if not (self.roles / self.role / "tasks" / "main.yml").is_file():
            raise ExecutorUnavailable(f"there is no Ansible role {self.role} in {self.roles}")
        try:
            import ansible_runner  # noqa: F401
        except ImportError:
            raise ExecutorUnavailable("ansible-runner is not installed") from None
        extra = variables(context, self.binding)
        hosts = inventory(hosts_of(context), self.ssh)
        base = context.work_dir / context.run_id / f"ansible-{context.key}-{context.attempt}"
        try:
            runner = _prepare(base, self.role, self.roles, extra, hosts, context.work_dir)
            # ansible-playbook, its forks and what they run die with the worker.
            record = processes.record_for(context)
            command, why = await forks.servers.command(runner.env, record, runner.command)
            if why:
                await emit.log(
                    "system", f"Ansible fast path unavailable ({why}); running ansible-playbook"
                )
            runner.command = processes.command(record, context.cancel_grace, command)
            return await _drive(runner, context, emit, cancel)
        finally:
            await asyncio.to_thread(shutil.rmtree, base, True)


def _prepare(
    base: Path,
    role: str,
    roles: Path,
    extra: dict[str, Any],
    hosts: dict[str, Any],
    work_dir: Path,
) -> Any:
    from ansible_runner.config.runner import RunnerConfig

    shutil.rmtree(base, ignore_errors=True)
    (base / "project").mkdir(parents=True, mode=0o700)
    (base / "env").mkdir(mode=0o700)
    (base / "inventory").mkdir(mode=0o700)
    playbook = [{"name": role, "hosts": "target", "gather_facts": False, "roles": [role]}]
    (base / "project" / "main.yml").write_text(json.dumps(playbook))
    write_private_json(base / "env" / "extravars", extra)
    write_private_json(base / "inventory" / "hosts.json", hosts)
    config = RunnerConfig(
        private_data_dir=str(base),
        playbook="main.yml",
        inventory=str(base / "inventory" / "hosts.json"),
        quiet=True,
        settings={"pexpect_timeout": POLL, "suppress_ansible_output": True},
        envvars=_ansible_env(base, roles, work_dir),
        ident="run",
    )
    config.prepare()
    # ansible-runner starts from the worker's environment; the Aegir settings (the secret
    # key, database URLs) must not reach the playbook's commands.
    config.env = {k: v for k, v in config.env.items() if not k.startswith("AEGIR_")}
    return config


def _ansible_env(base: Path, roles: Path, work_dir: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    # The binding's roles first; the built-in ones after, for shared roles (aegir_common).
    roles_path = dict.fromkeys([str(roles), str(ROLES_DIR)])
    return {
        "PATH": bin_dir if not path else f"{bin_dir}:{path}",
        "ANSIBLE_ROLES_PATH": ":".join(roles_path),
        "ANSIBLE_ACTION_PLUGINS": str(ACTION_PLUGINS),
        # Shared by the worker's playbooks: a fork server fixes it when it imports Ansible.
        "ANSIBLE_HOME": str(work_dir / "ansible-home"),
        # SSH connections are kept open a minute and shared by the tasks that follow.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work_dir / "ssh-control"),
        # A module's code through the connection's stdin: one round trip, not a temporary
        # file put and run (no role uses become, whose requiretty would refuse it).
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_LOCAL_TEMP": str(base / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_FORCE_COLOR": "true",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "PYTHONUNBUFFERED": "1",
    }


async def _drive(config: Any, context: TaskContext, emit: Emitter, cancel: asyncio.Event) -> int:
    from ansible_runner.runner import Runner

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    deadline = time.monotonic() + context.timeout
    timed_out = threading.Event()

    def on_event(event: dict[str, Any]) -> bool:
        loop.call_soon_threadsafe(events.put_nowait, event)
        return False  # we keep no artifacts: the log is in Aegir's database

    def should_cancel() -> bool:
        if time.monotonic() > deadline:
            timed_out.set()
        return stop.is_set() or timed_out.is_set()

    runner = Runner(config, event_handler=on_event, cancel_callback=should_cancel)

    def run() -> None:
        try:
            runner.run()
        finally:
            loop.call_soon_threadsafe(events.put_nowait, _END)

    thread = threading.Thread(target=run, name=f"ansible-{context.run_id}", daemon=True)
    watcher = asyncio.create_task(_watch(cancel, stop))
    thread.start()
    try:
        while (event := await events.get()) is not _END:
            await _handle(event, emit)
    finally:
        watcher.cancel()
        stop.set()
        await asyncio.to_thread(thread.join)
    if runner.canceled and timed_out.is_set():
        await emit.log("system", f"timed out after {context.timeout:g}s: playbook stopped")
        return EXIT_TIMEOUT
    if runner.canceled:
        await emit.log("system", "cancelled: playbook stopped")
        return EXIT_CANCELLED
    code = runner.rc
    if not isinstance(code, int):
        return 1
    return code


async def _watch(cancel: asyncio.Event, stop: threading.Event) -> None:
    await cancel.wait()
    stop.set()


async def _handle(event: dict[str, Any], emit: Emitter) -> None:
    text = event.get("stdout") or ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line := line.rstrip("\r"):
            await emit.log("stdout", line)
    if event.get("event") not in ("runner_on_ok", "runner_on_failed"):
        return
    result = (event.get("event_data") or {}).get("res") or {}
    if not isinstance(result, dict) or result.get("_ansible_no_log"):
        return
    if "cmd" in result:
        # What a command printed: Ansible shows it only when verbose; users want it.
        for stream in ("stdout", "stderr"):
            for line in result.get(f"{stream}_lines") or []:
                await emit.log(stream, f"  {line}")
    written = result.get("aegir_output")
    if event["event"] == "runner_on_ok" and isinstance(written, dict):
        for name, value in written.items():
            await emit.output(str(name), value)
