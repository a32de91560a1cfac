"""Playbooks through the worker's Ansible fork server (executors/ansible/forks.py): what
users see per task is what ``ansible-playbook`` gave them, and nothing outlives a task.

The first tests drive the whole system (``hosting``); the others run the executor in
this process on the test catalogue's probe playbook (``tests/fixtures/scripts/task.py
probe``: a command that starts a child and a stray in a session of its own, and sleeps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.catalog.registry import catalog_with
from executors import executor_for
from executors.ansible import forks
from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, TaskContext
from executors.processes import records
from executors.shepherd import descendants, exists, stat
from tests.catalog import samples
from tests.fixtures.hosting import Hosting
from tests.fixtures.stack import running_stack, wait_for

FALLBACK = "Ansible fast path unavailable"
INSTALL = ["database", "files", "settings", "vhost", "install"]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _fork_servers(parent: int) -> list[int]:
    """The fork servers ``parent`` started (not their forks, which share their name)."""
    return [
        pid
        for pid in descendants(parent)
        if _parent(pid) == parent and "forkserver.py" in _command_line(pid)
    ]


def _ancestors(pid: int) -> Iterator[int]:
    while (found := stat(pid)) is not None and found[1] > 1:
        pid = found[1]
        yield pid


def _parent(pid: int) -> int | None:
    found = stat(pid)
    return None if found is None else found[1]


def _run_by_fork_server(pid: int) -> bool:
    return any("forkserver.py" in _command_line(up) for up in _ancestors(pid))


# The whole system.


def test_an_install_runs_each_task_in_the_worker_s_one_warm_ansible(hosting: Hosting) -> None:
    """Five playbooks, one Ansible start: each task has its status, times, lines and
    outputs as before, and the worker's one fork server served the next install too."""
    platform = hosting.platform("static-fast", page="Fast")
    worker = hosting.stack.processes["worker"].pid
    values = {"database": {"engine": "mariadb", "db_password": "fast-path-pass1"}}
    site = hosting.site("fast.example.test", platform)
    run = hosting.run(site, "install", values)
    log = "\n".join(run["log"])
    assert run["status"] == "succeeded", log
    assert FALLBACK not in log
    steps = [t for t in run["tasks"] if t["task_key"] in INSTALL]
    assert [(t["task_key"], t["status"]) for t in steps] == [(k, "succeeded") for k in INSTALL]
    times = [(t["started_at"], t["finished_at"]) for t in steps]
    assert all(start <= end for start, end in times)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(times))
    for role in ("site_database", "site_files", "site_settings", "site_vhost", "site_install"):
        assert f"PLAY [{role}]" in log
    database = hosting.outputs(site, "install", "database")
    assert database == {"db_name": "fast_example_test", "db_user": "fast_example_test"}
    assert hosting.get("fast.example.test") == (200, "<h1>Fast</h1>\n")
    servers = _fork_servers(worker)
    assert len(servers) == 1
    again = hosting.run(hosting.site("fast2.example.test", platform), "install", values)
    assert again["status"] == "succeeded", "\n".join(again["log"])
    assert _fork_servers(worker) == servers


def test_a_failed_task_on_the_fast_path_is_undone(hosting: Hosting) -> None:
    """The failing task's exit code and status; the steps after it skipped; the undo
    step run, told what had completed."""
    platform = hosting.platform("drupal-fast-failing", flavor="drupal")
    (Path(platform["fields"]["root"]) / "fail-install").touch()
    site = hosting.site("fast-broken.example.test", platform)
    run = hosting.run(site, "install", {"database": {"engine": "mariadb"}})
    log = "\n".join(run["log"])
    assert run["status"] == "failed", log
    assert run["exit_code"] == 2  # ansible-playbook: a task failed
    assert FALLBACK not in log
    statuses = {t["task_key"]: t["status"] for t in run["tasks"]}
    assert statuses == {
        **{key: "succeeded" for key in INSTALL[:-1]},
        "install": "failed",
        "certificate": "skipped",  # after the failed step: never run
        "install_cleanup": "succeeded",
    }
    assert "undoing what this run did (database, files, settings, vhost)" in log
    assert "PLAY [site_install_cleanup]" in log
    assert not (hosting.nginx.sites_dir / "fast-broken.example.test.conf").exists()


def test_a_killed_worker_takes_its_fork_server_and_playbooks_with_it(tmp_path: Path) -> None:
    """SIGKILL to the worker while a playbook runs: the fork server, the playbook's fork,
    the command it runs, its child and its stray (own session) all stop."""
    pids = tmp_path / "pids"
    with running_stack(f"sqlite+aiosqlite:///{tmp_path / 'aegir.sqlite3'}") as stack:
        with stack.client() as http:
            app = stack.make_app(http, "fast-path-killed")
            values = {"probe_playbook": {"pids": str(pids), "sleep": 120}}
            stack.trigger(http, app, "probe_playbook", values)
            wait_for(lambda: pids.exists() and pids.read_text().strip(), "the probe", 60)
            probe, child, stray = (int(pid) for pid in pids.read_text().split())
            worker = stack.processes["worker"].pid
            servers = _fork_servers(worker)
            assert len(servers) == 1 and _run_by_fork_server(probe)
            playbook = [up for up in _ancestors(probe) if _parent(up) == servers[0]]
            stack.kill("worker", signal.SIGKILL)
            gone = [*servers, *playbook, probe, child, stray]
            wait_for(lambda: not any(exists(pid) for pid in gone), "the run's processes to stop")
        assert list((stack.root / "var" / "work" / "processes").glob("*.fork.rec")) == []


# The executor in this process.


@dataclasses.dataclass
class Recorded:
    """What an executor emitted."""

    lines: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)

    async def log(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    async def output(self, name: str, value: Any) -> None:
        self.outputs[name] = value

    def text(self) -> str:
        return "\n".join(line for _stream, line in self.lines)


def _probe(tmp_path: Path, sleep: float, timeout: float = 60) -> TaskContext:
    catalog = catalog_with(("tests.fixtures.catalog",))
    app = samples.entity("testapp", "probe", {})
    values = {"pids": str(tmp_path / "pids"), "sleep": sleep, "kill_worker": 0}
    context = samples.context(catalog, app, "probe_playbook", probe_playbook=values)
    work = tmp_path / "work"
    return dataclasses.replace(context, work_dir=work, timeout=timeout, run_id=tmp_path.name)


async def _run(context: TaskContext, cancel: asyncio.Event) -> tuple[int, Recorded]:
    task = catalog_with(("tests.fixtures.catalog",)).tasks["test_probe_playbook"]
    emitted = Recorded()
    return await executor_for(task).run(context, emitted, cancel), emitted


def _read_pids(pids: Path) -> list[int]:
    return [int(pid) for pid in pids.read_text().split()] if pids.exists() else []


async def _started(pids: Path) -> list[int]:
    for _ in range(1200):
        if found := await asyncio.to_thread(_read_pids, pids):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the probe never started")


async def _gone(found: list[int]) -> bool:
    for _ in range(200):
        if not any(exists(pid) for pid in found):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_playbook_past_its_timeout_on_the_fast_path_is_stopped(tmp_path: Path) -> None:
    context = _probe(tmp_path, sleep=120, timeout=8)
    running = asyncio.create_task(_run(context, asyncio.Event()))
    started = await _started(tmp_path / "pids")
    assert _run_by_fork_server(started[0])
    code, emitted = await running
    assert code == EXIT_TIMEOUT
    assert ("system", "timed out after 8s: playbook stopped") in emitted.lines
    assert FALLBACK not in emitted.text()
    assert await _gone(started), "the command, its child and its stray are stopped"
    assert list(records(context.work_dir).glob("*.fork.rec")) == []


async def test_a_cancelled_playbook_on_the_fast_path_is_stopped(tmp_path: Path) -> None:
    context = _probe(tmp_path, sleep=120)
    cancel = asyncio.Event()
    running = asyncio.create_task(_run(context, cancel))
    started = await _started(tmp_path / "pids")
    assert _run_by_fork_server(started[0])
    cancel.set()
    code, emitted = await running
    assert code == EXIT_CANCELLED
    assert ("system", "cancelled: playbook stopped") in emitted.lines
    assert await _gone(started), "the command, its child and its stray are stopped"
    assert list(records(context.work_dir).glob("*.fork.rec")) == []


async def test_without_a_fork_server_a_playbook_runs_the_old_way_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that cannot start (here: an interpreter without Ansible) costs one line
    per task, and the task runs as it did before: ansible-playbook under its shepherd."""
    python = tmp_path / "python-without-ansible"
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named ansible' >&2\n")
    python.chmod(0o755)
    monkeypatch.setattr(forks, "servers", forks.ForkServers(str(python)))
    context = _probe(tmp_path, sleep=0)
    code, emitted = await _run(context, asyncio.Event())
    assert code == 0, emitted.text()
    why = "the fork server did not start: ModuleNotFoundError: No module named ansible"
    assert ("system", f"{FALLBACK} ({why}); running ansible-playbook") in emitted.lines
    assert any("attempt done" in line for _stream, line in emitted.lines)
