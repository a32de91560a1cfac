"""The processes of a run on this machine: started under a shepherd, found and stopped.

The worker starts every command of a run through ``command`` (``executors.shepherd``
keeps the whole tree with it); the sweeper, before it settles a run whose worker is
gone, calls ``stop_recorded`` with the run's records: whatever is left of it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from executors import shepherd

if TYPE_CHECKING:
    from executors.base import TaskContext

SCRIPT = Path(shepherd.__file__).resolve()


def command(record: Path, grace: float, argv: Iterable[str]) -> list[str]:
    """The argv that runs ``argv`` under a shepherd recording itself in ``record``."""
    return [sys.executable, "-I", "-S", str(SCRIPT), str(record), f"{grace:g}", "--", *argv]


def records(work_dir: Path) -> Path:
    """Where the shepherds of runs started with this work directory record themselves."""
    return work_dir / "processes"


def record_for(context: TaskContext) -> Path:
    """A fresh record for one command of ``context``'s task."""
    name = f"{context.run_id}.{context.attempt}.{context.key}.{os.urandom(4).hex()}.rec"
    return records(context.work_dir) / name


def records_of_run(work_dir: Path, run_id: str) -> list[Path]:
    """The records of every attempt of the run still on this machine."""
    return sorted(records(work_dir).glob(f"{run_id}.*.rec"))


@dataclass(frozen=True)
class Stopped:
    """What ``stop_recorded`` found and did."""

    stopped: int  # processes killed
    left: int  # processes still alive after the wait (uninterruptible, or not ours)

    def describe(self) -> str:
        if not self.stopped and not self.left:
            return "no process of it was left running"
        said = f"{self.stopped} process{'es' if self.stopped != 1 else ''} of it stopped"
        return said if not self.left else f"{said}; {self.left} could not be stopped"


def stop_recorded(found: Iterable[Path], wait: float = 5.0) -> Stopped:
    """Kill every process of the recorded shepherds (alive or not): their trees, groups
    and tagged processes. A record whose shepherd is gone still names its process group
    and tag, which its strays still carry. Each record is removed once nothing of it is
    left."""
    stopped = left = 0
    for path in found:
        record = _read(path)
        if record is None:
            path.unlink(missing_ok=True)
            continue
        pid, pgid, start, tag = record
        targets = shepherd.members(pgid) | shepherd.tagged(tag)
        if shepherd.start_time(pid) == start:
            targets |= shepherd.descendants(pid) | {pid}
        targets.discard(os.getpid())
        for target in targets:
            shepherd.send(target, signal.SIGKILL)
        remaining = _wait_gone(targets, wait)
        stopped += len(targets) - len(remaining)
        left += len(remaining)
        if not remaining:
            path.unlink(missing_ok=True)
    return Stopped(stopped, left)


def _read(path: Path) -> tuple[int, int, int, str] | None:
    try:
        pid, pgid, start, tag = path.read_text().split()
        return int(pid), int(pgid), int(start), tag
    except (OSError, ValueError):
        return None


def _wait_gone(pids: set[int], wait: float) -> set[int]:
    deadline = time.monotonic() + wait
    remaining = {pid for pid in pids if shepherd.exists(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = {pid for pid in remaining if shepherd.exists(pid)}
    return remaining


class Started(Protocol):
    """A started command whose ``pid`` leads its process group."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> int: ...


async def stop_group(process: Started, grace: float) -> None:
    """SIGTERM to the process's group (a shepherd in it stays to clean up), SIGKILL to
    what is left after the grace period."""
    signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    # Children may outlive the leader; the group is gone only when all are.
    signal_group(process.pid, signal.SIGKILL)


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
