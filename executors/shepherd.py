"""The shepherd: every command a worker starts for a run runs under one, so none outlives it.

A worker killed with SIGKILL cannot stop what it started: its commands live on,
orphaned, changing a server that Aegir believes idle while the run is settled or run
again. So a command is not started by the worker itself but by this small process
(``python -I -S shepherd.py RECORD GRACE -- argv...``, standard library only, so it
starts in milliseconds), which:

- asks the kernel for a signal when its parent (the worker) dies (``PR_SET_PDEATHSIG``),
  and then stops the whole tree: SIGTERM, ``GRACE`` seconds, SIGKILL;
- is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the command starts, even
  in a session of its own, becomes the shepherd's child when its parent exits, so every
  descendant can be found and stopped, and none escapes to init;
- on its own exit stops what the command left behind (background processes), saying so
  on stderr, which the worker logs;
- records itself (pid, process group, start time) in ``RECORD`` while it lives, and tags
  the command's environment (``AEGIR_RUN_PROCESS``, inherited by all it starts), so the
  sweeper on the same machine can find and stop a run's processes before it settles the
  run, should the shepherd itself have been killed too (the tag is how Jenkins' process
  tree killer finds a build's strays).

The command stays in the shepherd's process group, so the worker's SIGTERM/SIGKILL to
the group on a cancel or timeout reaches it as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the shepherd itself runs with the standard library only
    from executors.base import TaskContext

# In the environment of every process of a run (inherited by what the command starts,
# even in a session of its own): how the sweeper finds them once the shepherd is gone.
TAG = "AEGIR_RUN_PROCESS"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Sent by the kernel when the worker (our parent) dies.
PARENT_DIED = signal.SIGUSR2
HERE = Path(__file__).resolve()


def command(record: Path, grace: float, argv: Iterable[str]) -> list[str]:
    """The argv that runs ``argv`` under a shepherd recording itself in ``record``."""
    return [sys.executable, "-I", "-S", str(HERE), str(record), f"{grace:g}", "--", *argv]


def records(work_dir: Path) -> Path:
    """Where the shepherds of runs started with this work directory record themselves."""
    return work_dir / "processes"


def record_for(context: TaskContext) -> Path:
    """A fresh record for one command of ``context``'s task."""
    name = f"{context.run_id}.{context.attempt}.{context.key}.{os.urandom(4).hex()}.json"
    return records(context.work_dir) / name


def records_of_run(work_dir: Path, run_id: str) -> list[Path]:
    """The records of every attempt of the run still on this machine."""
    return sorted(records(work_dir).glob(f"{run_id}.*.json"))


# What the sweeper calls: the processes a dead worker's run left on this machine.


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


def stop_recorded(records: Iterable[Path], wait: float = 5.0) -> Stopped:
    """Kill every process of the recorded shepherds (alive or not): their trees and groups.

    A record whose shepherd is gone still names its process group, whose members may
    have outlived it. Each record is removed once nothing of it is left.
    """
    stopped = left = 0
    for path in records:
        found = _record(path)
        if found is None:
            path.unlink(missing_ok=True)
            continue
        pid, pgid, start, tag = found
        alive = _start_time(pid) == start
        targets = _members(pgid) | _tagged(tag) | (_descendants(pid) | {pid} if alive else set())
        targets.discard(os.getpid())
        for target in targets:
            _signal(target, signal.SIGKILL)
        remaining = _wait_gone(targets, wait)
        stopped += len(targets) - len(remaining)
        left += len(remaining)
        if not remaining:
            path.unlink(missing_ok=True)
    return Stopped(stopped, left)


def _record(path: Path) -> tuple[int, int, int, str] | None:
    try:
        data = json.loads(path.read_text())
        return int(data["pid"]), int(data["pgid"]), int(data["start"]), str(data["tag"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tag(record: Path) -> str:
    return record.name.removesuffix(".json")


def _tagged(tag: str) -> set[int]:
    """Processes whose environment carries ``tag`` (those we may read: ours)."""
    marker = f"{TAG}={tag}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.add(int(entry))
    return found


def _wait_gone(pids: set[int], wait: float) -> set[int]:
    deadline = time.monotonic() + wait
    remaining = {pid for pid in pids if _exists(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = {pid for pid in remaining if _exists(pid)}
    return remaining


def _exists(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped; only its parent's wait is missing)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


# /proc, read the way ps does.


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time in clock ticks since boot) of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[3]


def _all() -> dict[int, tuple[str, int, int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_state, ppid, _pgid, _start) in _all().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _members(pgid: int) -> set[int]:
    return {pid for pid, stat in _all().items() if stat[2] == pgid and stat[0] != "Z"}


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


# The shepherd itself.


def _say(line: str) -> None:
    """A line for the run's log, on stderr; lost without harm when no one reads it any
    more (the worker died: its end of the pipe is closed)."""
    with contextlib.suppress(OSError):
        sys.stderr.write(f"aegir: {line}\n")
        sys.stderr.flush()


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


class Shepherd:
    def __init__(self, record: Path, grace: float, argv: list[str]) -> None:
        self.record = record
        self.grace = grace
        self.argv = argv
        self.parent = os.getppid()

    def run(self) -> int:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        # The handler stops everything and exits, wherever the shepherd is (even inside
        # waitpid, which Python would otherwise retry after a handler that returns).
        signal.signal(PARENT_DIED, self._parent_died)
        _prctl(PR_SET_PDEATHSIG, PARENT_DIED)
        if os.getppid() != self.parent:  # the worker died before we asked to be told
            return 137
        # The group's SIGTERM (a cancel) is for the command; we stay to clean up after
        # it. Ignored before the fork, so that no SIGTERM can come in between.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._write_record()
        try:
            child = self._spawn()
            code = self._wait(child)
            self._stop_leftovers(child)
            return code
        finally:
            self.record.unlink(missing_ok=True)

    def _write_record(self) -> None:
        me = os.getpid()
        body = {
            "pid": me,
            "pgid": os.getpgid(0),
            "start": _start_time(me),
            "tag": _tag(self.record),
        }
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps(body))

    def _spawn(self) -> int:
        child = os.fork()
        if child == 0:  # the command: back to default signals, and gone with us
            try:
                signal.signal(PARENT_DIED, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                os.environ[TAG] = _tag(self.record)
                os.execvp(self.argv[0], self.argv)  # noqa: S606 - an argv list, no shell
            except OSError as error:
                sys.stderr.write(f"cannot start {self.argv[0]}: {error.strerror}\n")
            os._exit(127)
        return child

    def _parent_died(self, _signum: int, _frame: object) -> None:
        self._stop_tree(f"its worker (pid {self.parent}) died")

    def _wait(self, child: int) -> int:
        """Reap children (adopted orphans too) until the command exits; its exit code."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 1
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code  # killed by signal N: 128 + N

    def _stop_leftovers(self, child: int) -> None:
        left = _descendants(os.getpid())
        if left:
            _say(f"the command (pid {child}) left {len(left)} process(es) running; stopping them")
            self._kill(left)

    def _stop_tree(self, why: str) -> None:
        """The worker is gone: nothing of this run may go on. Then exit."""
        targets = _descendants(os.getpid()) | _members(os.getpgid(0)) | _tagged(_tag(self.record))
        targets.discard(os.getpid())
        _say(f"{why}; stopping {len(targets)} process(es) of the run")
        self._kill(targets)
        self.record.unlink(missing_ok=True)
        os._exit(137)

    def _kill(self, targets: set[int]) -> None:
        for pid in targets:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(_exists(pid) for pid in targets):
            self._reap()
            time.sleep(0.02)
        for pid in _descendants(os.getpid()) | {p for p in targets if _exists(p)}:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + self.grace + 5
        while self._reap() and time.monotonic() < deadline:
            pass

    def _reap(self) -> bool:
        """Reap one exited child without waiting; False when none is left to wait for."""
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            time.sleep(0.01)
        return True


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: shepherd.py RECORD GRACE -- COMMAND [ARG...]\n")
        return 2
    return Shepherd(Path(args[0]), float(args[1]), args[3:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
