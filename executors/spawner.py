"""A warm shepherd per worker: a command starts in a fork, not in a new Python.

Every command of a run runs under a shepherd (``executors.shepherd``: it dies with the
worker and takes the command's tree with it). Started as ``python -I -S shepherd.py``
per command, that costs a Python start (~18 ms) before each command. Here one shepherd
server is started per worker process, lazily (``python -I -S shepherd.py --serve SOCKET
WORKER_PID``); each command is a request on its Unix socket: argv, environment, working
directory, record and grace, with the command's stdin/stdout/stderr passed along
(``SCM_RIGHTS``). The server forks; the fork leads a session and process group of its
own and is the command's shepherd exactly as the per-command one is (subreaper, record,
tag, leftovers stopped, ``PR_SET_PDEATHSIG`` on the server, which has it on the worker).
It answers ``pid N`` once it leads its group, then ``exit N``.

``spawn`` gives a process-like ``Command``; when the server cannot start (said once in
the log, with why) or went away, the command runs under ``processes.command`` as before.
"""

from __future__ import annotations

import array
import asyncio
import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from executors import processes, shepherd

log = logging.getLogger(__name__)
# A stdlib-only Python start and a bind: milliseconds; generous for a loaded machine.
START_TIMEOUT = 30.0
_READ_LIMIT = 1 << 16


class Command(Protocol):
    """What the callers need of a started command (``asyncio.subprocess.Process`` is one):
    its group is ``pid``'s, its streams, and its exit code."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    async def wait(self) -> int: ...


@dataclass
class WarmCommand:
    """A command run by a fork of the warm shepherd; ``pid`` is that fork's, the leader
    of the command's process group."""

    pid: int
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    connection: socket.socket
    stdin: None = None  # /dev/null
    returncode: int | None = None
    _done: asyncio.Future[int] | None = field(default=None, repr=False)

    async def wait(self) -> int:
        if self._done is None:
            self._done = asyncio.ensure_future(self._exit_code())
        return await asyncio.shield(self._done)

    async def _exit_code(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.sock_recv(self.connection, 64)
        except OSError:
            answer = b""
        finally:
            self.connection.close()
        # No answer: the fork was killed with its group (a cancel's SIGKILL).
        code = int(answer[5:]) if answer.startswith(b"exit ") else -signal.SIGKILL
        # The shepherd says 128 + N for a command killed by signal N, as a shell does.
        self.returncode = code
        return code


@dataclass
class Server:
    """A warm server process of this worker (the shepherd's, or Ansible's fork server)
    and its directory (socket, temp files); only the process that started it owns it."""

    process: subprocess.Popen[bytes]
    directory: Path
    owner: int = field(default_factory=os.getpid)

    @property
    def socket(self) -> Path:
        return self.directory / "socket"

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def stop(self) -> None:
        """Its forks stop their commands' trees when it dies (their PR_SET_PDEATHSIG)."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class ServerUnavailable(Exception):
    """The warm shepherd could not start or answer; the message says why."""


class Spawner:
    """This process's warm shepherd, started on first use; ``None`` once it failed."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._server: Server | None = None
        self._failed = ""
        # One per event loop: tests run several loops in one process.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._locks = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def _lock(self) -> asyncio.Lock:
        with self._guard:
            return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def server(self) -> Server | None:
        async with self._lock():
            if self._failed:
                return None
            if self._server is None or not self._server.alive():
                try:
                    self._server = await _start(self.python)
                except ServerUnavailable as error:
                    self._failed = str(error)
                    log.warning("warm shepherd unavailable (%s): commands start their own", error)
                    return None
            return self._server

    async def spawn(
        self, argv: list[str], *, record: Path, grace: float, cwd: str, env: dict[str, str]
    ) -> Command:
        """``argv`` started under a shepherd (warm when it can), stdin from /dev/null,
        its stdout and stderr piped. OSError when it cannot change to ``cwd``."""
        server = await self.server()
        if server is not None:
            try:
                return await _warm(server, argv, record, grace, cwd, env)
            except ServerUnavailable as error:
                log.warning("warm shepherd went away (%s): this command starts its own", error)
        return await asyncio.create_subprocess_exec(
            *processes.command(record, grace, argv),
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a cancel reaches children
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


async def _start(python: str) -> Server:
    directory = Path(tempfile.mkdtemp(prefix="aegir-shepherd-"))
    try:
        server = _spawn(python, directory)
    except OSError as error:
        shutil.rmtree(directory, ignore_errors=True)
        raise ServerUnavailable(f"it did not start: {error}") from None
    if not await asyncio.to_thread(ready, server.process, shepherd.READY, START_TIMEOUT):
        server.stop()
        raise ServerUnavailable(f"it did not start: {last_line(server.directory / 'server.log')}")
    return server


def _spawn(python: str, directory: Path) -> Server:
    """Called in the event loop's thread, not a pool's: PR_SET_PDEATHSIG follows the
    thread that started the server. A fork-exec and a directory, once per worker."""
    argv = [python, "-I", "-S", str(processes.SCRIPT), "--serve"]
    argv += [str(directory / "socket"), str(os.getpid())]
    with open(directory / "server.log", "wb") as said:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=said,
            cwd=directory,
            start_new_session=True,  # a cancel's signal to a command's group never reaches it
        )
    return Server(process, directory)


def ready(process: subprocess.Popen[bytes], line: bytes, timeout: float) -> bool:
    """Whether ``process`` says ``line`` on its stdout within ``timeout`` (else it is
    killed); shared with the Ansible fork servers."""
    assert process.stdout is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        return process.stdout.readline() == line
    finally:
        timer.cancel()
        process.stdout.close()


def last_line(path: Path) -> str:
    """A server's last word on why it did not start."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "no message"


async def _warm(
    server: Server, argv: list[str], record: Path, grace: float, cwd: str, env: dict[str, str]
) -> WarmCommand:
    loop = asyncio.get_running_loop()
    request = {"argv": argv, "env": env, "cwd": cwd, "record": str(record), "grace": grace}
    out, err = os.pipe(), os.pipe()
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.setblocking(False)
    try:
        try:
            await loop.sock_connect(connection, str(server.socket))
            fds = array.array("i", [stdin, out[1], err[1]])
            connection.sendmsg(
                [json.dumps(request).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
            )
            answer = await loop.sock_recv(connection, 256)
        except OSError as error:
            raise ServerUnavailable(str(error)) from None
    except BaseException:
        for fd in (out[0], err[0]):
            os.close(fd)
        connection.close()
        raise
    finally:
        for fd in (stdin, out[1], err[1]):
            os.close(fd)
    return await _started(connection, answer, out[0], err[0])


async def _started(connection: socket.socket, answer: bytes, out: int, err: int) -> WarmCommand:
    if not answer.startswith(b"pid "):
        os.close(out)
        os.close(err)
        connection.close()
        if answer.startswith(b"error "):
            number, _, why = answer[6:].decode(errors="replace").partition(" ")
            raise OSError(int(number), why)
        raise ServerUnavailable("no answer")
    stdout, stderr = await _reader(out), await _reader(err)
    return WarmCommand(int(answer[4:]), stdout, stderr, connection)


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


shepherds = Spawner()
atexit.register(shepherds.stop)


async def spawn(
    argv: list[str], *, record: Path, grace: float, cwd: str, env: dict[str, str]
) -> Command:
    """``Spawner.spawn`` through this process's warm shepherd."""
    return await shepherds.spawn(argv, record=record, grace=grace, cwd=cwd, env=env)
