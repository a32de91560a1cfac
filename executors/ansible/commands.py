"""One command of a direct action task: locally under a shepherd, or over a kept SSH link.

Locally the argv runs under a shepherd (``executors.spawner``: nothing of it outlives
the worker). Over SSH it runs through an OpenSSH master connection kept open
per host (``ControlMaster``), with the key and known hosts Ansible uses (``SshAccess``),
so a command costs one multiplexed channel instead of a TCP and key exchange. The
master runs under a shepherd: when the worker dies, the master goes, every channel
closes, and the server stops each command (see below).

On the server the command runs under a small POSIX ``sh`` script (``REMOTE``) that reads
the directory and the argv from stdin (never from the ssh command line, so nothing the
role templates shows in the control machine's process list), starts the command in a
process group sshd made for the session (its child calls ``setsid``), and stops that
whole group (SIGTERM, the grace, SIGKILL) when its stdin closes: the mux client was
stopped (timeout, cancel, dead worker). A watchdog subshell waits for that with the
shell's own ``read``: no program starts but ``sh`` and the command. That is what
Ansible's ``-tt`` gives through the pty's hangup, while stdout and stderr stay apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shlex
import signal
import sys
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from executors import processes, spawner
from executors.ansible.variables import SshAccess
from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, Emitter, TaskContext

# ansible-playbook's exit code when a host could not be reached.
EXIT_UNREACHABLE = 4
# An idle master connection is closed after this long (Ansible's ControlPersist is 60 s).
MASTER_IDLE = 60.0
CONNECT_TIMEOUT = 10
# How often a starting master's control socket is looked for.
POLL = 0.005
_READ_SIZE = 1 << 16

# $1: the token ending the header on stdin; $2: seconds between SIGTERM and SIGKILL.
# sh gives a background job /dev/null for stdin: the watchdog reads it as fd 3, and
# ignores the SIGTERM it sends to the group, to send the SIGKILL after the grace.
# The header is one line of shell words (quoted by shlex; a word may span lines): the
# directory ('' for none), then argv.
REMOTE = r"""
t=$1 g=$2 h=
while IFS= read -r l; do [ "$l" = "$t" ] && break; h="$h$l
"; done
eval "set -- $h"
d=$1; shift
if [ -n "$d" ]; then cd -- "$d" || exit 1; fi
exec 3<&0
"$@" </dev/null 3<&- &
c=$!
{ while read -r _; do :; done <&3; trap '' TERM; kill -TERM 0; sleep "$g"; kill -KILL 0; } \
  >/dev/null 2>&1 &
w=$!
wait "$c"; s=$?
kill "$w" 2>/dev/null
exit "$s"
"""


@dataclass(frozen=True)
class Target:
    """Where commands run: ``None`` address for the control machine itself."""

    name: str
    address: str | None = None
    port: int = 22
    user: str = ""


@dataclass
class Finished:
    """A command that ran to its end: its exit code and everything it printed."""

    rc: int
    stdout: str
    stderr: str


@dataclass
class Stopped:
    """A command stopped before its end (``EXIT_TIMEOUT``/``EXIT_CANCELLED``) or never
    started (``EXIT_UNREACHABLE``, 127), and why."""

    code: int
    message: str


@dataclass
class Deadline:
    """The action's one timeout, shared by all of its commands, and its cancel flag."""

    at: float
    timeout: float
    cancel: asyncio.Event

    @classmethod
    def of(cls, context: TaskContext, cancel: asyncio.Event) -> Deadline:
        return cls(time.monotonic() + context.timeout, context.timeout, cancel)


def _environment() -> dict[str, str]:
    """What ansible-playbook's modules would get: the worker's environment without the
    Aegir settings, the virtualenv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIR_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}:{env['PATH']}" if env.get("PATH") else bin_dir
    return env


async def run_command(
    argv: Sequence[str],
    chdir: str | None,
    target: Target,
    ssh: SshAccess,
    context: TaskContext,
    emit: Emitter,
    deadline: Deadline,
) -> Finished | Stopped:
    """Run ``argv`` on ``target``, its lines emitted as they come."""
    grace = context.cancel_grace
    if target.address is None:
        try:
            process = await spawner.spawn(
                list(argv),
                record=processes.record_for(context),
                grace=grace,
                cwd=chdir or os.getcwd(),
                env=_environment(),
            )
        except OSError as error:
            return Finished(2, "", f"Unable to change directory before execution: {error}")
        return await _supervise(process, None, emit, deadline, grace)
    master = await masters().connect(target, ssh, context.work_dir, grace, deadline)
    if isinstance(master, Stopped):
        return master
    token = secrets.token_hex(8)
    header = " ".join(shlex.quote(word) for word in (chdir or "", *argv))
    remote = f"sh -c {shlex.quote(REMOTE)} sh {token} {grace:g}"
    # No shepherd of its own (one Python start, 18 ms of a 50 ms budget): the master runs
    # under one, and when it goes (with the worker) every mux client loses its channel,
    # and the server stops each command (``REMOTE``) as its stdin closes.
    client = [*master.client_argv(), "--", remote]
    master.busy += 1
    try:
        process = await _spawn(client, None, asyncio.subprocess.PIPE)
        return await _supervise(process, f"{header}\n{token}\n", emit, deadline, grace)
    finally:
        master.busy -= 1
        master.used = time.monotonic()


async def _spawn(argv: Sequence[str], cwd: str | None, stdin: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=_environment(),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a stop reaches all of it
    )


async def _supervise(
    process: spawner.Command,
    header: str | None,
    emit: Emitter,
    deadline: Deadline,
    grace: float,
) -> Finished | Stopped:
    assert process.stdout is not None and process.stderr is not None
    if header is not None:
        assert process.stdin is not None
        # Written, and the pipe left open: the server stops the command when it closes.
        process.stdin.write(header.encode())
    out: list[str] = []
    err: list[str] = []
    pumps = asyncio.gather(
        _pump(process.stdout, "stdout", out, emit),
        _pump(process.stderr, "stderr", err, emit),
    )
    forced = await _wait(process, deadline)
    if forced is not None:  # its message is the caller's to say
        await processes.stop_group(process, grace)
    code = await process.wait()
    if process.stdin is not None:
        process.stdin.close()
    try:
        # What the command left running may hold the pipes open after it exits.
        await asyncio.wait_for(asyncio.shield(pumps), grace)
    except TimeoutError:
        processes.signal_group(process.pid, signal.SIGKILL)
        await pumps
    if forced is not None:
        return forced
    return Finished(code if code >= 0 else 128 - code, "\n".join(out), "\n".join(err))


async def _wait(process: spawner.Command, deadline: Deadline) -> Stopped | None:
    """``None`` once the command exits by itself; else why it must be stopped."""
    waiter = asyncio.ensure_future(process.wait())
    cancelled = asyncio.ensure_future(deadline.cancel.wait())
    left = max(deadline.at - time.monotonic(), 0.0)
    done, _ = await asyncio.wait(
        {waiter, cancelled}, timeout=left, return_when=asyncio.FIRST_COMPLETED
    )
    cancelled.cancel()
    if waiter in done:
        return None
    if deadline.cancel.is_set():
        return Stopped(EXIT_CANCELLED, "cancelled: command stopped")
    return Stopped(EXIT_TIMEOUT, f"timed out after {deadline.timeout:g}s: command stopped")


async def _pump(reader: asyncio.StreamReader, stream: str, kept: list[str], emit: Emitter) -> None:
    pending = b""
    while chunk := await reader.read(_READ_SIZE):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            await _line(raw, stream, kept, emit)
    if pending:
        await _line(pending, stream, kept, emit)


async def _line(raw: bytes, stream: str, kept: list[str], emit: Emitter) -> None:
    line = raw.decode("utf-8", errors="replace").rstrip("\r")
    kept.append(line)
    # Indented, as the playbook path shows what a command printed.
    await emit.log(stream, f"  {line}")


# --------------------------------------------------------------------- SSH masters


@dataclass
class Master:
    """One OpenSSH master process (under a shepherd) and its control socket."""

    control: Path
    options: list[str]
    destination: str
    process: asyncio.subprocess.Process
    said: deque[str] = field(default_factory=lambda: deque(maxlen=10))
    used: float = field(default_factory=time.monotonic)
    reader: asyncio.Task[None] | None = None
    busy: int = 0  # commands running through it now

    def alive(self) -> bool:
        return self.process.returncode is None and self.control.exists()

    def client_argv(self) -> list[str]:
        """A mux client: the same options, so that it still authenticates the same way
        should it ever have to connect by itself."""
        self.used = time.monotonic()
        return ["ssh", "-S", str(self.control), "-o", "ControlMaster=no", *self.options,
                self.destination]  # fmt: skip


def _ssh_options(target: Target, ssh: SshAccess) -> list[str]:
    """Ansible's ssh connection, as the inventory gives it (``variables._host``)."""
    options = ["-p", str(target.port), "-o", "BatchMode=yes",
               "-o", "PasswordAuthentication=no", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
               "-o", "ServerAliveInterval=15"]  # fmt: skip
    if ssh.key is not None:
        options += ["-i", str(ssh.key), "-o", "IdentitiesOnly=yes"]
    if ssh.known_hosts is not None:
        options += ["-o", f"UserKnownHostsFile={ssh.known_hosts}"]
    return options


class Masters:
    """The worker's master connections, one per host, user, port and key."""

    def __init__(self) -> None:
        self.open: dict[str, Master] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.janitor: asyncio.Task[None] | None = None

    async def connect(
        self, target: Target, ssh: SshAccess, work_dir: Path, grace: float, deadline: Deadline
    ) -> Master | Stopped:
        options = _ssh_options(target, ssh)
        destination = f"{target.user}@{target.address}" if target.user else str(target.address)
        key = hashlib.sha256("\0".join([destination, *options]).encode()).hexdigest()[:16]
        if self.janitor is None or self.janitor.done():
            self.janitor = asyncio.create_task(self._sweep())
        async with self.locks.setdefault(key, asyncio.Lock()):
            master = self.open.get(key)
            if master is not None and master.alive():
                return master
            if master is not None:
                await _close(master)
            directory = work_dir / "ssh-control"
            started = await _start(directory, key, options, destination, grace, deadline)
            if isinstance(started, Master):
                self.open[key] = started
            return started

    async def _sweep(self) -> None:
        """Close the masters idle for ``MASTER_IDLE``; done once none is left open."""
        while True:
            await asyncio.sleep(MASTER_IDLE / 4)
            now = time.monotonic()
            for key, master in list(self.open.items()):
                idle = not master.busy and now - master.used > MASTER_IDLE
                if idle and not self.locks[key].locked():
                    del self.open[key]
                    await _close(master)
            if not self.open:
                return


async def _start(
    directory: Path, key: str, options: list[str], destination: str, grace: float,
    deadline: Deadline,
) -> Master | Stopped:  # fmt: skip
    control = _fresh_control(directory, key)
    argv = ["ssh", "-M", "-N", "-S", str(control), "-o", "ControlPersist=no", *options,
            destination]  # fmt: skip
    record = directory / f"m-{key}.{os.urandom(4).hex()}.rec"
    process = await asyncio.create_subprocess_exec(
        *processes.command(record, grace, argv),
        env=_environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    master = Master(control, options, destination, process)
    master.reader = reader = asyncio.create_task(_keep_said(master))
    # The control socket appears once the connection is up and authenticated.
    # Within the action's timeout too: a host that drops packets must not outlast it.
    end = min(time.monotonic() + CONNECT_TIMEOUT + 5.0, deadline.at)
    for _ in range(int((CONNECT_TIMEOUT + 5.0) / POLL)):  # each turn sleeps POLL at least
        if control.exists() or process.returncode is not None or time.monotonic() >= end:
            break
        await asyncio.sleep(POLL)
    if master.alive():
        return master
    await _close(master)
    if time.monotonic() >= deadline.at:
        await reader
        said = f"timed out after {deadline.timeout:g}s: no connection to {destination} yet"
        return Stopped(EXIT_TIMEOUT, said)
    await reader
    said = " ".join(master.said) or "no connection within the time allowed"
    return Stopped(EXIT_UNREACHABLE, f"UNREACHABLE! {destination}: {said}")


def _fresh_control(directory: Path, key: str) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    control = directory / f"m-{key}"
    control.unlink(missing_ok=True)  # a dead master's socket
    return control


async def _keep_said(master: Master) -> None:
    """The master's stderr, its last lines kept: why a connection failed."""
    assert master.process.stderr is not None
    while line := await master.process.stderr.readline():
        master.said.append(line.decode(errors="replace").strip())


async def _close(master: Master) -> None:
    """The shepherd passes SIGTERM to nobody: it is the group that is signalled."""
    if master.process.returncode is None:
        processes.signal_group(master.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(master.process.wait(), 5)
        except TimeoutError:
            processes.signal_group(master.process.pid, signal.SIGKILL)
            await master.process.wait()
    master.control.unlink(missing_ok=True)


_MASTERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Masters] = (
    weakref.WeakKeyDictionary()
)


def masters() -> Masters:
    """This event loop's masters (a worker has one loop; a test may start several)."""
    return _MASTERS.setdefault(asyncio.get_running_loop(), Masters())
