"""The real back-end against one ``ansible-playbook`` run of the same roles (issue 12).

On the suite's own nginx, MariaDB and PostgreSQL (``tests.fixtures.hosting``) and the
whole system as processes (``running_stack``): a server ``verify`` (one task) and a site
``install`` (five tasks), over ``connection: local`` and over SSH to the suite's sshd.
Each is timed from the run's creation to its end (the run's own timestamps), and beside
it, in turn, its baseline: ONE ``ansible-playbook`` from the shell, one play holding the
same roles with the same variables.

The variables are the ones Aegir gave each role: a first run of each operation is made
with a callback (``CAPTURE_PLUGIN``, enabled only while its marker file exists) that
copies each playbook's extra variables and inventory. The baseline installs a new site
each time: the captured site's domain (and its database name) replaced by another.

    .venv/bin/python -m bench.hosting              # RUNS of each, writes section "hosting"
    AEGIR_BENCH_HOSTING_RUNS=2 .venv/bin/python -m bench.hosting    # to try it out
    AEGIR_BENCH_HOSTING_PROFILE=1 ...     # py-spy on one more install, aim met or not
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.cpu import machine_busy
from bench.sections import write_section
from bench.system import code_version, cpu_model
from executors.ansible.executor import ACTION_PLUGINS, ROLES_DIR
from tests.fixtures.hosting import (
    Hosting,
    mariadb_server,
    nginx_server,
    site_postgres_server,
    sshd_server,
)
from tests.fixtures.stack import running_stack

RUNS = int(os.environ.get("AEGIR_BENCH_HOSTING_RUNS", "7"))
# 1: profile an install even when the aim is met.
PROFILE = os.environ.get("AEGIR_BENCH_HOSTING_PROFILE") == "1"
INSTALL_AIM = 1.5
PASSWORD = "bench-db-pass'word1"  # noqa: S105 - a throwaway database of the bench
INSTALL_ROLES = ("site_database", "site_files", "site_settings", "site_vhost", "site_install")

CAPTURE_PLUGIN = '''
"""Copies each playbook's extra variables and inventory (bench.hosting's baseline)."""
import json, os, time
from pathlib import Path
from ansible import context
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "aegir_capture"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        into = Path(os.environ["BENCH_HOSTING_CAPTURE"])
        if not (into / "on").exists():
            return
        args = context.CLIARGS
        inventory = Path(args["inventory"][0])
        extra = [e[1:] for e in args["extra_vars"] if e.startswith("@")]
        base = inventory.parent.parent
        found = {
            "playbook": json.loads((base / "project" / "main.yml").read_text()),
            "inventory": json.loads(inventory.read_text()),
            "extra": json.loads(Path(extra[0]).read_text()),
        }
        (into / f"{time.monotonic_ns()}.json").write_text(json.dumps(found))
'''


def say(message: str) -> None:
    print(f"bench.hosting: {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    operation: str
    connection: str
    aegir: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.aegir) / statistics.median(self.baseline)


@dataclass
class Target:
    """A server entity (local or over SSH), a static platform on it, and the captured
    variables of its operations."""

    connection: str
    server: dict[str, Any]
    platform: dict[str, Any]
    captured: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _run_seconds(run: dict[str, Any]) -> float:
    """From the run's creation (the request was accepted) to its end."""
    start = datetime.fromisoformat(run["created_at"])
    return (datetime.fromisoformat(run["finished_at"]) - start).total_seconds()


def _aegir(hosting: Hosting, entity: dict[str, Any], op: str, values: dict[str, Any]) -> float:
    run = hosting.run(entity, op, values)
    if run["status"] != "succeeded":
        raise RuntimeError(f"{op} failed:\n" + "\n".join(run["log"][-30:]))
    return _run_seconds(run)


def _install_values() -> dict[str, Any]:
    return {"database": {"engine": "mariadb", "db_password": PASSWORD}}


def _ssh_server(hosting: Hosting, port: int, user: str) -> dict[str, Any]:
    fields = {**hosting.server["fields"], "hostname": "127.0.0.1", "connection": "ssh"}
    # The system's Python, as on a server of its own (the tests' SSH server says so too).
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    fields.update(ssh_user=user, ssh_port=port, python=python)
    response = hosting.http.post("/api/v1/servers", json={"name": "remote", "fields": fields})
    response.raise_for_status()
    server: dict[str, Any] = response.json()
    return server


def _site(hosting: Hosting, target: Target, domain: str) -> dict[str, Any]:
    body = {
        "name": domain,
        "fields": {},
        "references": {"platform": target.platform["id"], "db_server": target.server["id"]},
    }
    response = hosting.http.post("/api/v1/sites", json=body)
    response.raise_for_status()
    site: dict[str, Any] = response.json()
    return site


def _captured(into: Path) -> list[dict[str, Any]]:
    found = [json.loads(path.read_text()) for path in sorted(into.glob("*.json"))]
    for path in into.glob("*.json"):
        path.unlink()
    return found


def _capture(hosting: Hosting, target: Target, into: Path) -> None:
    """One verify and one install, their variables kept; they also start the worker's
    Ansible (the fork server), so the timed runs do not pay for it."""
    (into / "on").touch()
    try:
        _aegir(hosting, target.server, "verify", {})
        target.captured["verify"] = _captured(into)
        site = _site(hosting, target, f"capture-{target.connection}.bench.test")
        _aegir(hosting, site, "install", _install_values())
        target.captured["install"] = _captured(into)
    finally:
        (into / "on").unlink()
    roles = [c["playbook"][0]["roles"][0] for c in target.captured["install"]]
    if tuple(roles) != INSTALL_ROLES:
        raise RuntimeError(f"install ran {roles}, expected {INSTALL_ROLES}")


def _playbook(captured: list[dict[str, Any]], rename: tuple[str, str] | None) -> str:
    """One play, the captured roles in order, each with its own variables (role vars:
    a role's own come before the other roles' when it runs)."""
    roles = []
    for one in captured:
        role = one["playbook"][0]["roles"][0]
        roles.append({"role": role, "vars": one["extra"]})
    play = [{"name": "baseline", "hosts": "target", "gather_facts": False, "roles": roles}]
    text = json.dumps(play)
    if rename is not None:
        # The database name and user are the domain with "_" for what is not alphanumeric.
        for old, new in (rename, tuple(re.sub(r"\W", "_", part) for part in rename)):
            text = text.replace(old, new)
    return text


def _baseline_env(work: Path) -> dict[str, str]:
    """What the executor gives ansible-playbook (``executors.ansible.executor``), but the
    stdout callback: Ansible's default one, to a file."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIR_")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '')}",
        ANSIBLE_ROLES_PATH=str(ROLES_DIR),
        ANSIBLE_ACTION_PLUGINS=str(ACTION_PLUGINS),
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "ssh-control"),
        ANSIBLE_PIPELINING="true",
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="false",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return env


def _baseline(work: Path, captured: list[dict[str, Any]], rename: tuple[str, str] | None) -> float:
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.yml").write_text(_playbook(captured, rename))
    inventory = json.dumps(captured[0]["inventory"])
    if rename is not None:
        inventory = inventory.replace(*rename)
    (work / "hosts.json").write_text(inventory)
    argv = ["ansible-playbook", "-i", str(work / "hosts.json"), str(work / "main.yml")]
    with open(work / "out.log", "wb") as out:
        started = time.monotonic()
        done = subprocess.run(argv, env=_baseline_env(work), stdout=out, stderr=out, cwd=work)
        took = time.monotonic() - started
    if done.returncode != 0:
        tail = (work / "out.log").read_text().splitlines()[-30:]
        raise RuntimeError("the baseline playbook failed:\n" + "\n".join(tail))
    return took


def _measure(
    figure: Figure, runs: int, aegir: Callable[[int], float], baseline: Callable[[int], float]
) -> None:
    """Aegir and the baseline in turn, so that both see the same machine."""
    for index in range(runs):
        figure.aegir.append(aegir(index))
        figure.baseline.append(baseline(index))
        say(
            f"{figure.operation} {figure.connection} #{index + 1}: "
            f"aegir {figure.aegir[-1]:.2f}s, baseline {figure.baseline[-1]:.2f}s"
        )


def _figures(hosting: Hosting, target: Target, runs: int, work: Path) -> list[Figure]:
    name = target.connection
    verify = Figure("server verify", name)
    _measure(
        verify, runs,
        lambda _i: _aegir(hosting, target.server, "verify", {}),
        lambda i: _baseline(work / f"verify-{name}-{i}", target.captured["verify"], None),
    )  # fmt: skip
    install = Figure("site install (5 tasks)", name)
    old = f"capture-{name}.bench.test"
    _measure(
        install, runs,
        lambda i: _aegir(
            hosting, _site(hosting, target, f"aegir{i}-{name}.bench.test"), "install",
            _install_values(),
        ),
        lambda i: _baseline(
            work / f"install-{name}-{i}", target.captured["install"],
            (old, f"base{i}-{name}.bench.test"),
        ),
    )  # fmt: skip
    return [verify, install]


@contextmanager
def _hosting(root: Path) -> Iterator[tuple[Hosting, Path]]:
    into = root / "capture"
    plugins = root / "callbacks"
    into.mkdir()
    plugins.mkdir()
    (plugins / "aegir_capture.py").write_text(CAPTURE_PLUGIN)
    settings = {
        "ANSIBLE_CALLBACK_PLUGINS": str(plugins),
        "ANSIBLE_CALLBACKS_ENABLED": "aegir_capture",
        "BENCH_HOSTING_CAPTURE": str(into),
    }
    with ExitStack() as stack:
        nginx = stack.enter_context(nginx_server())
        mariadb = stack.enter_context(mariadb_server())
        postgres = stack.enter_context(site_postgres_server())
        url = f"sqlite+aiosqlite:///{root / 'aegir.sqlite3'}"
        system = stack.enter_context(running_stack(url, **settings))
        web = root / "web"
        web.mkdir()
        hosting = Hosting.create(system, web, nginx, mariadb, postgres)
        stack.callback(hosting.http.close)
        yield hosting, into


# Where an install's time goes: samples whose stack holds one of these frames.
PROFILE_FRAMES = {
    "the worker process itself (arq, ansible-runner reading events)": ("WORKER",),
    "ansible-playbook: the server's fork and Ansible's per-task processes": ("Server._child",),
    "of which Ansible's per-task processes (templating, connection)": ("WorkerProcess.run",),
    "building modules (AnsiballZ: module_utils found by parsing)": ("_find_module_utils",),
    "modules running (their Python start, imports from the zip)": ("_ansiballz_main",),
    "shepherds and fork clients (a Python start each)": ("shepherd.py", "forkclient.py"),
}


@dataclass
class Profile:
    samples: int
    shares: dict[str, float]


def _profile(hosting: Hosting, target: Target, root: Path) -> Profile | None:
    """py-spy on the worker and everything it starts, during one more install."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    out = root / "profile.txt"
    worker = hosting.stack.processes["worker"].pid
    argv = [str(py_spy), "record", "--subprocesses", "--nonblocking", "-r", "100", "-f", "raw"]
    spy = subprocess.Popen(
        [*argv, "-o", str(out), "-p", str(worker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)  # attached
    try:
        _aegir(hosting, _site(hosting, target, "profiled.bench.test"), "install", _install_values())
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    return _shares(out, worker) if out.exists() else None


def _shares(raw: Path, worker: int) -> Profile:
    total = 0
    counts = dict.fromkeys(PROFILE_FRAMES, 0)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = stack.split(";")
        own = frames[0].startswith(f"process {worker}:") and not (
            len(frames) > 1 and frames[1].startswith("process ")
        )
        for label, markers in PROFILE_FRAMES.items():
            if (own and "WORKER" in markers) or any(marker in stack for marker in markers):
                counts[label] += int(count)
    return Profile(total, {k: v / total for k, v in counts.items()} if total else {})


def measure(runs: int) -> tuple[list[Figure], float, float, Profile | None]:
    """The figures; the wall time and the machine's busy CPU seconds while measuring;
    a profile of one more install if the install aim was missed."""
    with tempfile.TemporaryDirectory(prefix="aegir-bench-hosting-") as tmp:
        root = Path(tmp)
        with _hosting(root) as (hosting, into):
            local = Target("local", hosting.server, hosting.platform("bench-local", page="L"))
            with sshd_server(hosting.stack.root / "var" / "ssh") as sshd:
                server = _ssh_server(hosting, sshd.port, sshd.user)
                remote = Target(
                    "ssh", server, hosting.platform("bench-ssh", page="S", server=server)
                )
                for target in (local, remote):
                    _capture(hosting, target, into)
                wall, busy = time.monotonic(), machine_busy()
                figures = _figures(hosting, local, runs, root / "baseline")
                figures += _figures(hosting, remote, runs, root / "baseline")
                wall, busy = time.monotonic() - wall, machine_busy() - busy
                missed = any(_install_missed(f) for f in figures)
                profile = _profile(hosting, local, root) if missed or PROFILE else None
                return figures, wall, busy, profile


def _install_missed(figure: Figure) -> bool:
    return figure.operation.startswith("site install") and figure.ratio > INSTALL_AIM


FINDINGS = [
    "How (issue 12, item 2): each worker starts one Ansible fork server "
    "(`executors/ansible/forkserver.py`): Ansible imported and one trivial play run, so "
    "its loaders, the collection routing and plugin documentation are read once; each "
    "playbook is a fork of it, handed ansible-runner's argv, environment and stdio by a "
    "small client (`forkclient.py`), so ansible-runner, events, cancel and exit codes are "
    "unchanged. Built modules (AnsiballZ) are shared by the forks; SSH connection masters "
    "(ControlPersist) now outlive a task (the shepherd used to stop them at each task's "
    "end); modules are piped (`ANSIBLE_PIPELINING`).",
    "Measured while building it (machine shared with four other engineers): "
    "`ansible-playbook` with one `command: true` task, local: 0.70 s; a fork of a process "
    "that had only imported Ansible: 0.32 s; a fork of the warmed server: 0.21 s, of "
    "which most is the module's own Python start and imports on the target.",
    "Mitogen for Ansible 0.3.54 with ansible-core 2.19.14: it loads and runs a play "
    "(`mitogen_linear`), but a one-task playbook took 1.2 s against 0.7 s: it starts its "
    "own interpreter per playbook, which pays off only over many tasks of one playbook. "
    "Not used.",
]


def render(
    figures: list[Figure], runs: int, wall: float, busy: float, profile: Profile | None
) -> str:
    cores = os.cpu_count() or 1
    lines = [
        "## The real back-end: verify and install against one ansible-playbook (issue 12)",
        "",
        f"`python -m bench.hosting`, {runs} runs of each, Aegir and its baseline in turn; "
        f"commit {code_version()}, {cores} x {cpu_model()}. Aegir: from the run's creation "
        "to its end (its own timestamps), through API, worker (Ansible fork server) and "
        "relay. Baseline: ONE `ansible-playbook` from the shell, one play of the same roles "
        "with the variables Aegir gave them. Aim (issue 12): install ≤ 1.5x the baseline.",
        "",
        "| operation | connection | Aegir p50 | baseline p50 | ratio | aim |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for f in figures:
        aim = "—"
        if f.operation.startswith("site install"):
            aim = f"≤ {INSTALL_AIM}x {'MISSED' if _install_missed(f) else 'met'}"
        lines.append(
            f"| {f.operation} | {f.connection} | {statistics.median(f.aegir):.2f} s | "
            f"{statistics.median(f.baseline):.2f} s | {f.ratio:.2f}x | {aim} |"
        )
    lines += [
        "",
        f"The machine was {busy / wall / cores:.0%} busy on average while measuring "
        f"({busy:.0f} CPU-seconds in {wall:.0f} s on {cores} cores), this bench included: "
        "figures taken while other work runs on the machine are not clean.",
        "",
        *(f"- {finding}" for finding in FINDINGS),
    ]
    if profile is not None:
        lines += _render_profile(profile)
    return "\n".join(lines)


def _render_profile(profile: Profile) -> list[str]:
    lines = [
        "",
        f"Where an install's time goes (py-spy, the worker and all it starts, one more "
        f"local install, {profile.samples} samples at 100 Hz; shares overlap):",
        "",
        "| part | share of samples |",
        "| --- | ---: |",
    ]
    lines += [f"| {label} | {share:.0%} |" for label, share in profile.shares.items()]
    lines += [
        "",
        "The next step, should more be wanted: one playbook per operation (a play per "
        "task, task boundaries taken from the event stream) would leave one play set-up "
        "and one handler flush per operation; modules' own Python start on the target "
        "stays, as in the baseline.",
    ]
    return lines


def main() -> None:
    figures, wall, busy, profile = measure(RUNS)
    markdown = render(figures, RUNS, wall, busy, profile)
    write_section("hosting", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
