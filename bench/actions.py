"""The site's Log in action through the real back-end (``python -m bench.actions``), issue 12.

The whole system as processes (``BenchStack``: Redis, ``aegir serve``, a worker, a relay)
on a fresh SQLite database (or ``AEGIR_BENCH_DATABASE_URL``), a Drupal platform whose
drush is the tests' stand-in (``tests/fixtures/drush/drush``) told to sleep 0.3 s on
``uli`` (``slow-uli``), as drush uli does on a real Drupal; once on the control machine
(``connection: local``) and once over SSH, to an sshd of our own on 127.0.0.1
(``tests.fixtures.hosting.sshd_server``).

For each, ``--calls`` POSTs of ``/api/v1/sites/{id}/actions/login`` one after another
(after ``--warmup``), each followed by the same stand-in command run bare: from a
subprocess locally, and over SSH through a master connection of the bench's own (the
direct path's kept connection, without the worker). Overhead = round trip - bare, per
percentile. Where an aim is missed, py-spy samples the worker and the API during more
calls and the section shows where their time goes.

Writes the ``actions`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.sections import write_section
from bench.system import BenchStack, Database, code_version, cpu_model
from executors import processes, spawner
from tests.fixtures.hosting import DRUSH, SshServer, sshd_server

CALLS = 50
WARMUP = 5
ULI_SECONDS = 0.3
PROFILE_SECONDS = 8.0
# The aims of issue 12, item 3.
LOGIN_P50 = 1000.0
OVERHEAD_P50 = 50.0
OVERHEAD_P95 = 100.0
NEXT_STEP = (
    "What the overhead is made of: the dispatch path (API, Redis, the worker's reads: "
    "the no-op action figure of `make bench`), about 3 ms of templating in the worker "
    "(Ansible's Templar compiles each template anew), and per command the shepherd "
    "locally (the figure above: a fork of the worker's warm shepherd) or, over SSH, the "
    "server's wrapper (`sh` and a watchdog subshell: one exec, two forks). Next step: "
    "compiled templates cached per role."
)


@dataclass
class Measured:
    """One way the login runs: its round trips and the bare command's times, in ms."""

    name: str
    round_trips: list[float]
    bare: list[float]

    def p(self, values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    @property
    def overhead_p50(self) -> float:
        return self.p(self.round_trips, 50) - self.p(self.bare, 50)

    @property
    def overhead_p95(self) -> float:
        return self.p(self.round_trips, 95) - self.p(self.bare, 95)

    def met(self) -> dict[str, bool]:
        return {
            "login": self.p(self.round_trips, 50) < LOGIN_P50,
            "p50": self.overhead_p50 <= OVERHEAD_P50,
            "p95": self.overhead_p95 <= OVERHEAD_P95,
        }


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def drupal_site(http: httpx.Client, web: Path, name: str, server: dict[str, Any]) -> Any:
    """A Drupal platform with the slow drush stand-in, and a site on it."""
    root = web / name
    (root / "sites").mkdir(parents=True)
    (root / "vendor" / "bin").mkdir(parents=True)
    shutil.copy(DRUSH, root / "vendor" / "bin" / "drush")
    (root / "slow-uli").write_text(str(ULI_SECONDS))
    body = {"name": name, "fields": {"root": str(root), "flavor": "drupal"},
            "references": {"server": server["id"]}}  # fmt: skip
    platform = _created(http.post("/api/v1/platforms", json=body))
    body = {"name": f"{name}.example.test", "fields": {},
            "references": {"platform": platform["id"], "db_server": server["id"]}}  # fmt: skip
    site = _created(http.post("/api/v1/sites", json=body))
    uli = [str(root / "vendor" / "bin" / "drush"), "uli", f"--root={root}",
           f"--uri=http://{name}.example.test", "--no-browser"]  # fmt: skip
    return site, root, uli


def login(http: httpx.Client, site: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = http.post(f"/api/v1/sites/{site['id']}/actions/login")
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    assert "/user/reset/" in response.json()["url"]
    return elapsed


def timed(argv: list[str], cwd: Path | None = None) -> float:
    # The PATH the worker gives commands (the virtualenv's python3 first): a pyenv shim
    # would add 100 ms to the bare figure.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    assert done.returncode == 0 and "/user/reset/" in done.stdout, done.stderr
    return elapsed


def shepherd_cost(calls: int, work: Path) -> tuple[Measured, Measured]:
    """``true`` under a shepherd against ``true`` alone: what the guarantee that no
    command outlives its worker costs each local command; through the worker's warm
    shepherd (``executors.spawner``, as the worker starts commands), and cold (one
    Python start per command, its fallback)."""
    record = work / "bench.rec"
    alone = [_run(["true"]) for _ in range(calls)]
    cold = [_run(processes.command(record, 2, ["true"])) for _ in range(calls)]
    warm, alone_async = asyncio.run(_warm_cost(calls, work))
    return Measured("warm shepherd", warm, alone_async), Measured("shepherd", cold, alone)


async def _warm_cost(calls: int, work: Path) -> tuple[list[float], list[float]]:
    warm, alone = [], []
    await _spawned(work)  # the server's start, once per worker
    for _ in range(calls):
        warm.append(await _spawned(work))
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "true", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await process.communicate()
        alone.append((time.perf_counter() - started) * 1000)
    return warm, alone


async def _spawned(work: Path) -> float:
    started = time.perf_counter()
    env = {"PATH": os.environ["PATH"]}
    command = await spawner.spawn(["true"], record=work / "bench.rec", grace=2, cwd=str(work),
                                  env=env)  # fmt: skip
    assert command.stdout is not None and command.stderr is not None
    await asyncio.gather(command.stdout.read(), command.stderr.read())
    await command.wait()
    return (time.perf_counter() - started) * 1000


def _run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return (time.perf_counter() - started) * 1000


def measure(name: str, call: Callable[[], float], bare: Callable[[], float], calls: int,
            warmup: int) -> Measured:  # fmt: skip
    for _ in range(warmup):
        call()
        bare()
    found = Measured(name, [], [])
    for _ in range(calls):  # interleaved: both see the same machine
        found.round_trips.append(call())
        found.bare.append(bare())
    return found


@contextmanager
def ssh_master(sshd: SshServer) -> Iterator[list[str]]:
    """The bench's own kept connection: the argv prefix of a command sent through it."""
    control = Path(tempfile.mkdtemp(prefix="bench-ssh-")) / "m"
    options = ["-p", str(sshd.port), "-i", str(sshd.key), "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={sshd.known_hosts}"]  # fmt: skip
    destination = f"{sshd.user}@127.0.0.1"
    master = subprocess.Popen(
        ["ssh", "-M", "-N", "-S", str(control), *options, destination],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield ["ssh", "-S", str(control), "-o", "ControlMaster=no", *options, destination]
    finally:
        master.terminate()
        master.wait(10)
        shutil.rmtree(control.parent, ignore_errors=True)


def profile(stack: BenchStack, call: Callable[[], float], seconds: float) -> str:
    """py-spy on the worker and the API while ``call`` repeats: where their time goes."""
    out = stack.root / "profiles"
    out.mkdir(exist_ok=True)
    spies = {
        name: subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(stack.processes[name].pid),
                "-d",
                str(int(seconds)),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(out / f"{name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("worker", "api")
    }
    time.sleep(0.5)
    deadline = time.monotonic() + seconds - 1
    while time.monotonic() < deadline:
        call()
    for spy in spies.values():
        spy.wait(seconds + 30)
    return "\n".join(top_frames(out / f"{name}.txt", name) for name in spies)


def top_frames(raw: Path, name: str, rows: int = 8) -> str:
    """py-spy's collapsed stacks: per sample, the innermost function of ours (app/,
    workers/, executors/, relay/) and the leaf function, most sampled first."""
    if not raw.exists():
        return f"(py-spy wrote no profile for the {name})\n"
    ours: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        leaves[frames[-1]] += int(count)
        mine = [frame for frame in frames if _ours(frame)]
        ours[mine[-1] if mine else "(not ours)"] += int(count)
    lines = [f"**{name}**: {total} samples at 250 Hz, on CPU only", "",
             "| innermost of ours | share | | leaf | share |",
             "|---|---:|---|---|---:|"]  # fmt: skip
    inner, leaf = ours.most_common(rows), leaves.most_common(rows)
    for i in range(max(len(inner), len(leaf))):
        a = inner[i] if i < len(inner) else ("", 0)
        b = leaf[i] if i < len(leaf) else ("", 0)
        lines.append(f"| `{a[0]}` | {_share(a[1], total)} | | `{b[0]}` | {_share(b[1], total)} |")
    return "\n".join(lines) + "\n"


def _ours(frame: str) -> bool:
    parts = ("app/", "workers/", "executors/", "relay/")
    return any(f"({part}" in frame for part in parts) and "(app/cli.py" not in frame


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.0f} %" if total and count else ""


def markdown(
    found: list[Measured],
    shepherd: tuple[Measured, Measured],
    profiles: str,
    args: argparse.Namespace,
    shared: str,
) -> str:
    rows = []
    for each in found:
        met = each.met()
        rows += [
            f"| {each.name}: login round trip p50 | {each.p(each.round_trips, 50):.0f} ms | "
            f"bare {each.p(each.bare, 50):.0f} ms | < 1000 ms | {_said(met['login'])} |",
            f"| {each.name}: overhead p50 | {each.overhead_p50:.1f} ms | | ≤ 50 ms | "
            f"{_said(met['p50'])} |",
            f"| {each.name}: overhead p95 | {each.overhead_p95:.1f} ms | "
            f"(p95 round trip - p50 bare: {_tail(each):.1f} ms) "
            f"| ≤ 100 ms | {_said(met['p95'])} |",
        ]
    detail = [f"| {each.name} | {_ms(each.round_trips)} | {_ms(each.bare)} |" for each in found]
    text = [
        "## Actions through the real back-end (`python -m bench.actions`, issue 12 item 3)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, code {code_version()}, {cpu_model()}, "
        f"{os.cpu_count()} cores, {Database().kind}. {shared}",
        "",
        f"The site's Log in action (role `site_login`: assert, `drush uli`, `aegir_output`), "
        f"the drush stand-in sleeping {ULI_SECONDS:g} s on `uli`; {args.calls} calls after "
        f"{args.warmup} warm-up, each followed by the stand-in run bare (locally: a "
        "subprocess; over SSH: through a kept connection of the bench's own). Overhead = "
        "round trip - bare, at each percentile. Before this work the action ran a whole "
        "`ansible-playbook`: 0.84-1.14 s even when it failed at its first step, about 1.5 s "
        "with drush (issue 12).",
        "",
        "| figure | ours | baseline | aim | |",
        "|---|---:|---|---|---|",
        *rows,
        "",
        "| path | round trip p50 / p95 / max | bare p50 / p95 / max |",
        "|---|---|---|",
        *detail,
        "",
        f"Of the local overhead, the shepherd (`executors/spawner.py`: a fork of the "
        f"worker's warm shepherd before each local command, so that none outlives its worker) "
        f"costs {shepherd[0].overhead_p50:.1f} ms p50 and {shepherd[0].overhead_p95:.1f} ms "
        f"p95 here (`true` under it, against `true` alone, both from asyncio); a shepherd of "
        f"its own (a Python start, the fallback) {shepherd[1].overhead_p50:.1f} ms p50 and "
        f"{shepherd[1].overhead_p95:.1f} ms p95. Over SSH only the master connection runs "
        "under one, once per host.",
    ]
    missed = [each.name for each in found if not all(each.met().values())]
    if missed:
        text += ["", f"Missed ({', '.join(missed)}). " + NEXT_STEP]
    if profiles:
        text += [
            "",
            "### Where the time goes (py-spy on the worker and the API, during "
            "more calls: local, then SSH)",
            "",
            profiles,
        ]
    return "\n".join(text) + "\n"


def _tail(each: Measured) -> float:
    """The stricter reading of p95: every slow call counted as ours."""
    return each.p(each.round_trips, 95) - each.p(each.bare, 50)


def _said(met: bool) -> str:
    return "Met" if met else "**MISSED**"


def _ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"{q[49]:.0f} / {q[94]:.0f} / {max(values):.0f} ms"


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"Load average {one:.1f} (1 min), {five:.1f} (5 min) at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--profile", action="store_true", help="profile even if every aim is met")
    parser.add_argument("--no-write", action="store_true", help="print; leave RESULTS.md alone")
    args = parser.parse_args()
    shared = load_average() + (
        ": other work was running on this machine, figures are not clean."
        if os.getloadavg()[0] > 0.5
        else "."
    )
    database = Database()
    database.migrate()
    stack = BenchStack(database.url)
    web = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    web.chmod(0o755)
    try:
        stack.start()
        with stack.client() as http, sshd_server(stack.root / "var" / "ssh") as sshd:
            found, calls = run_paths(http, web, sshd, args)
            shepherd = shepherd_cost(args.calls, web)
            print(markdown(found, shepherd, "", args, shared))
            missed = not all(all(each.met().values()) for each in found)
            profiles = profile(stack, calls[0], PROFILE_SECONDS) if missed or args.profile else ""
            if missed or args.profile:
                profiles += "\n" + profile(stack, calls[1], PROFILE_SECONDS)
        section = markdown(found, shepherd, profiles, args, shared)
        print(section)
        if not args.no_write:
            write_section("actions", section)
    finally:
        stack.stop()
        database.remove()
        shutil.rmtree(web, ignore_errors=True)


def run_paths(
    http: httpx.Client, web: Path, sshd: SshServer, args: argparse.Namespace
) -> tuple[list[Measured], list[Callable[[], float]]]:
    local = _created(http.post("/api/v1/servers", json={"name": "localhost",
                     "fields": {"hostname": "localhost", "connection": "local"}}))  # fmt: skip
    fields = {"hostname": "127.0.0.1", "connection": "ssh", "ssh_user": sshd.user,
              "ssh_port": sshd.port}  # fmt: skip
    remote = _created(http.post("/api/v1/servers", json={"name": "remote", "fields": fields}))
    site, root, uli = drupal_site(http, web, "local", local)
    ssh_site, ssh_root, ssh_uli = drupal_site(http, web, "remote", remote)
    found, calls = [], []
    local_call: Callable[[], float] = lambda: login(http, site)  # noqa: E731
    found.append(measure("local", local_call, lambda: timed(uli, root), args.calls, args.warmup))
    calls.append(local_call)
    with ssh_master(sshd) as through:
        remote_uli = [*through, "--", f"cd {shlex.quote(str(ssh_root))} && {shlex.join(ssh_uli)}"]
        ssh_call: Callable[[], float] = lambda: login(http, ssh_site)  # noqa: E731
        found.append(measure("SSH", ssh_call, lambda: timed(remote_uli), args.calls, args.warmup))
        calls.append(ssh_call)
    return found, calls


if __name__ == "__main__":
    main()
