"""CPU seconds per process and phase, read from /proc: which process is the bottleneck."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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
