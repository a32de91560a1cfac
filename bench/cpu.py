"""CPU seconds per process and phase, read from /proc: which process is the bottleneck."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children) CPU seconds of ``pid``; zeros once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    # After the command name: state, ppid, ..., utime (11), stime, cutime, cstime.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / TICK


OTHERS = "other processes"


@dataclass
class Phase:
    name: str
    wall: float
    cpu: dict[str, float]


@dataclass
class Meter:
    """Named processes, and the bench's own; ``name: commands`` is what their
    subprocesses used (counted once they have been waited for)."""

    pids: dict[str, int]
    # CPU of processes that ended within a phase (baseline workers), by name.
    ended: dict[str, float] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)

    def snapshot(self) -> dict[str, float]:
        seen: dict[str, float] = dict(self.ended)
        for name, pid in self.pids.items():
            for key, value in zip((name, f"{name}: commands"), process_cpu(pid), strict=True):
                seen[key] = seen.get(key, 0.0) + value
        mine = os.times()
        seen["bench client"] = mine.user + mine.system
        # Reaped children: the commands the bench runs itself, and the baseline workers,
        # already counted under their own names.
        reaped = mine.children_user + mine.children_system - sum(self.ended.values())
        seen["bench client: commands"] = max(reaped, 0.0)
        seen[OTHERS] = machine_busy()  # the whole machine, until ``phase`` subtracts ours
        return seen

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def remove(self, name: str) -> None:
        """Just before ``name`` exits: keep what it used."""
        own, children = process_cpu(self.pids.pop(name))
        self.ended[name] = self.ended.get(name, 0.0) + own
        self.ended[f"{name}: commands"] = self.ended.get(f"{name}: commands", 0.0) + children

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        before, start = self.snapshot(), time.perf_counter()
        yield
        wall = time.perf_counter() - start
        after = self.snapshot()
        used = {key: after[key] - before.get(key, 0.0) for key in after}
        # What else ran on the machine meanwhile: it took CPU from what was measured.
        ours = sum(value for key, value in used.items() if key != OTHERS)
        used[OTHERS] = max(used.pop(OTHERS) - ours, 0.0)
        self.phases.append(Phase(name, wall, {k: v for k, v in used.items() if v > 0.005}))


# Where the CPU goes inside a process: py-spy samples, sorted into what spends them.

PY_SPY_RATE = 100  # samples per second: light enough to leave the figures alone

# (what, a frame of it): the first that matches a sample's stack names its layer.
LAYERS = (
    ("arq (job bookkeeping)", "arq/"),
    ("SQLAlchemy and the database driver", "sqlalchemy/"),
    ("SQLAlchemy and the database driver", "aiosqlite/"),
    ("SQLAlchemy and the database driver", "asyncpg/"),
    ("Redis client", "redis/"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "fastapi/"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "starlette/"),
    ("HTTP (uvicorn, Starlette, FastAPI)", "uvicorn/protocols"),
    ("pydantic", "pydantic"),
    ("JSON", "json/"),
)
IDLE_LEAVES = ("EpollSelector.select", "aiosqlite/core.py:59", "Condition.wait", "Runner.run")


@dataclass
class Profile:
    """One process's busy samples: by layer, and by the innermost Aegir function."""

    name: str
    samples: int
    layers: dict[str, int]
    functions: dict[str, int]


def summarise(name: str, raw: str) -> Profile:
    """A py-spy ``raw`` (collapsed stacks) record, idle samples left out."""
    layers: dict[str, int] = {}
    functions: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        count = int(count_text)
        total += count
        layer = _layer(frames)
        layers[layer] = layers.get(layer, 0) + count
        # The innermost Aegir function: the call of ours that the libraries below it
        # (the query, the Redis round trip) were spent for.
        function = next(
            (f for f in map(_aegir, reversed(frames)) if f),
            "(no frame of ours: the event loop, or SQLAlchemy's greenlet)",
        )
        functions[function] = functions.get(function, 0) + count
    return Profile(name, total, layers, functions)


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for layer, marker in LAYERS:
            if marker in frame:
                return layer
        if _aegir(frame):
            return "Aegir's own code"
    return "event loop, sockets and the rest"


def _aegir(frame: str) -> str:
    """``module.function`` for a frame of Aegir's own code, else ``""``."""
    function, _, where = frame.partition(" (")
    path = where.split(":", 1)[0]
    package = path.split("/", 1)[0]
    if package not in ("app", "workers", "relay", "executors") or path.startswith("app/cli"):
        return ""
    return f"{path.removesuffix('.py').replace('/', '.')}.{function}"


def py_spy() -> str | None:
    """The py-spy next to this Python (the dev extras install it), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def profiled(pids: dict[str, int], out: Path) -> Iterator[list[Profile]]:
    """py-spy on each named process meanwhile; the list holds their profiles after."""
    spy = py_spy()
    found: list[Profile] = []
    records: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in pids.items() if spy else ():
        path = out / f"py-spy-{name.replace(' ', '-')}.txt"
        argv = [spy or "", "record", "-p", str(pid), "-f", "raw", "-o", str(path),
                "-r", str(PY_SPY_RATE), "--nonblocking"]  # fmt: skip
        records[name] = (
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            path,
        )
    time.sleep(0.5)  # attached before the first sample is due
    try:
        yield found
    finally:
        for process, _path in records.values():
            process.send_signal(signal.SIGINT)
        for name, (process, path) in records.items():
            process.wait(60)
            if path.exists():
                found.append(summarise(name, path.read_text()))
