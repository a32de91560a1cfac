"""The shepherd: every command a worker starts for a run runs under one, so none outlives it.

A worker killed with SIGKILL cannot stop what it started: its commands live on,
orphaned, changing a server that Aegir believes idle while the run is settled or run
again. So a command is not started by the worker itself but by this small process
(``python -I -S shepherd.py RECORD GRACE -- argv...``; see ``executors.processes``),
which:

- asks the kernel for a signal when its parent (the worker) dies (``PR_SET_PDEATHSIG``),
  and then stops the whole tree: SIGTERM, ``GRACE`` seconds, SIGKILL;
- is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the command starts, even
  in a session of its own, becomes the shepherd's child when its parent exits, so every
  descendant can be found and stopped, and none escapes to init;
- on its own exit stops what the command left behind (background processes), saying so
  on stderr, which the worker logs;
- records itself (pid, process group, start time, tag) in ``RECORD`` while it lives, and
  tags the command's environment (``AEGIR_RUN_PROCESS``, inherited by all it starts), so
  the sweeper on the same machine can find and stop a run's processes before it settles
  the run, should the shepherd itself have been killed too (the tag is how Jenkins'
  process tree killer finds a build's strays).

The command stays in the shepherd's process group, so the worker's SIGTERM/SIGKILL to
the group on a cancel or timeout reaches it as before. It imports only what it must
(no pathlib, json or dataclasses): it starts before every command of every run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

# typing costs the per-command shepherd milliseconds; mypy reads this as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# In the environment of every process of a run (inherited by what the command starts,
# even in a session of its own): how the sweeper finds them once the shepherd is gone.
TAG = "AEGIR_RUN_PROCESS"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Sent by the kernel when the worker (our parent) dies.
PARENT_DIED = signal.SIGUSR2


def tag_of(record: str) -> str:
    """A record's tag: its file name without the extension."""
    return os.path.basename(record).rsplit(".", 1)[0]


# /proc, read the way ps does; shared with the sweeper (executors.processes).


def stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time in clock ticks since boot) of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def start_time(pid: int) -> int | None:
    found = stat(pid)
    return None if found is None else found[3]


def exists(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped; only its parent's wait is missing)."""
    found = stat(pid)
    return found is not None and found[0] != "Z"


def _table() -> dict[int, tuple[str, int, int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := stat(int(entry))) is not None:
            table[int(entry)] = found
    return table


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_state, ppid, _pgid, _start) in _table().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def members(pgid: int) -> set[int]:
    """The live processes of a process group."""
    return {pid for pid, found in _table().items() if found[2] == pgid and found[0] != "Z"}


def tagged(tag: str) -> set[int]:
    """Processes whose environment carries ``tag`` (those we may read: ours)."""
    marker = f"{TAG}={tag}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.add(int(entry))
    return found


def name(pid: int) -> str:
    """A process's command name, as ps shows it."""
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return str(pid)


def send(pid: int, signum: signal.Signals) -> None:
    try:  # noqa: SIM105 - contextlib would cost the shepherd's start-up an import
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# The shepherd itself.


def _say(line: str) -> None:
    """A line for the run's log, on stderr; lost without harm when no one reads it any
    more (the worker died: its end of the pipe is closed)."""
    try:
        sys.stderr.write(f"aegir: {line}\n")
        sys.stderr.flush()
    except OSError:
        pass


def prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


class Shepherd:
    def __init__(self, record: str, grace: float, argv: list[str]) -> None:
        self.record = record
        self.tag = tag_of(record)
        self.grace = grace
        self.argv = argv
        self.parent = os.getppid()

    def run(self) -> int:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        # The handler stops everything and exits, wherever the shepherd is (even inside
        # waitpid, which Python would otherwise retry after a handler that returns).
        signal.signal(PARENT_DIED, self._parent_died)
        prctl(PR_SET_PDEATHSIG, PARENT_DIED)
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
            self._remove_record()

    def _write_record(self) -> None:
        me = os.getpid()
        os.makedirs(os.path.dirname(self.record) or ".", exist_ok=True)
        with open(self.record, "w") as handle:
            handle.write(f"{me} {os.getpgid(0)} {start_time(me)} {self.tag}\n")

    def _remove_record(self) -> None:
        try:  # noqa: SIM105 - as in send()
            os.unlink(self.record)
        except OSError:
            pass

    def _spawn(self) -> int:
        child = os.fork()
        if child == 0:  # the command: back to default signals, and gone with us
            try:
                # SIGPIPE and SIGXFSZ too: Python ignores them, and exec would keep that.
                for signum in (PARENT_DIED, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                os.environ[TAG] = self.tag
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
        # A subreaper with no child at all has no descendant either (an orphan would
        # have become our child): the common case, answered without reading /proc.
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                pass
        except ChildProcessError:
            return
        left = descendants(os.getpid())
        if left:
            names = ", ".join(sorted({name(pid) for pid in left}))
            _say(f"the command left {len(left)} process(es) running ({names}); stopping them")
            self._kill(left)

    def _stop_tree(self, why: str) -> None:
        """The worker is gone: nothing of this run may go on. Then exit."""
        targets = descendants(os.getpid()) | members(os.getpgid(0)) | tagged(self.tag)
        targets.discard(os.getpid())
        _say(f"{why}; stopping {len(targets)} process(es) of the run")
        self._kill(targets)
        self._remove_record()
        os._exit(137)

    def _kill(self, targets: set[int]) -> None:
        for pid in targets:
            send(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(exists(pid) for pid in targets):
            self._reap()
            time.sleep(0.02)
        for pid in descendants(os.getpid()) | {p for p in targets if exists(p)}:
            send(pid, signal.SIGKILL)
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


# The warm shepherd: one per worker (``executors.spawner``), a fork per command.

READY = b"ready\n"
# How long a client may take to send its request once connected.
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 1 << 20


def receive(connection: Any, count: int) -> tuple[bytes, list[int]]:
    """One message and exactly ``count`` file descriptors passed with it (SCM_RIGHTS);
    shared with the Ansible fork server."""
    import socket

    fds: list[int] = []
    data, ancillary, _flags, _address = connection.recvmsg(
        MAX_REQUEST, socket.CMSG_SPACE(count * 4)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(
                int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, len(payload), 4)
            )
    if len(fds) != count:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"expected {count} file descriptors, got {len(fds)}")
    return data, fds


def serve(path: str, worker: int) -> int:
    """Serve ``path`` until SIGTERM (the worker stops it, or died); each request is a
    command, run by a forked shepherd that answers ``pid N`` then ``exit N``."""
    import shutil
    import socket

    def gone(_signum: int, _frame: object) -> None:
        # Our forks stop their commands' trees as we go (their PR_SET_PDEATHSIG); the
        # directory was made for this server alone.
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, gone)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != worker:  # the worker died before we asked to be told
        return 137
    # Our forks are reaped by the kernel; each is a subreaper for its own command.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    os.write(1, READY)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        connection, _ = listener.accept()
        try:
            _serve_one(listener, connection)
        except (OSError, ValueError) as error:
            _say(f"request not served: {error}")
        finally:
            connection.close()


def _serve_one(listener: Any, connection: Any) -> None:
    import json
    import socket

    uid = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8]  # pid uid gid
    if int.from_bytes(uid, sys.byteorder) != os.getuid():
        raise ValueError("the client is another user")
    connection.settimeout(REQUEST_TIMEOUT)
    data, fds = receive(connection, 3)
    try:
        request = json.loads(data)
        sys.stderr.flush()
        server = os.getpid()
        if os.fork() == 0:
            code = 1
            try:
                listener.close()
                code = _forked(connection, request, fds, server)
            finally:
                os._exit(code)
    finally:
        for fd in fds:
            os.close(fd)


def _forked(connection: Any, request: dict[str, Any], fds: list[int], server: int) -> int:
    """In the fork: become the command's shepherd, as ``main`` would in a new process,
    leading the command's session and process group (a cancel signals the group)."""
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:  # the command keeps 0, 1 and 2 only
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    try:
        os.chdir(request["cwd"])
    except OSError as error:
        connection.send(f"error {error.errno} {error.strerror}".encode())
        return 127
    connection.send(f"pid {os.getpid()}".encode())
    shepherd = Shepherd(request["record"], float(request["grace"]), request["argv"])
    # Should the server be gone already, our parent is another: run() sees it and stops.
    shepherd.parent = server
    code = shepherd.run()
    try:  # noqa: SIM105 - as in send()
        connection.send(f"exit {code}".encode())
    except OSError:
        pass
    return code


def main(args: list[str]) -> int:
    if len(args) == 3 and args[0] == "--serve":
        return serve(args[1], int(args[2]))
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: shepherd.py RECORD GRACE -- COMMAND [ARG...]\n")
        sys.stderr.write("       shepherd.py --serve SOCKET WORKER_PID\n")
        return 2
    return Shepherd(args[0], float(args[1]), args[3:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
