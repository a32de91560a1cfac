"""A worker's Ansible fork servers, and the command that runs a playbook through one.

One server per set of values Ansible fixes at import (``forkserver.fixed_at_import``):
in practice one per worker. It is started by the first playbook that needs it (about a
second, once: Ansible's imports and a warm-up play) and then serves every playbook of
the worker; it dies with the worker (``PR_SET_PDEATHSIG``) and is stopped at exit.

Should a server fail to start, its playbooks run the old way (``ansible-playbook``
under its shepherd) and each task's log says why in one line; it is not tried again in
this process, so a broken fast path costs nothing more than the old one.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

from executors.ansible.forkserver import READY, fixed_at_import
from executors.spawner import Server, last_line, ready

HERE = Path(__file__).resolve().parent
SERVER = HERE / "forkserver.py"
CLIENT = HERE / "forkclient.py"
# Imports plus the warm-up play: about a second here; generous for a loaded machine.
START_TIMEOUT = 60.0
# Per playbook, in the directory of a run: a fork sets them from its client's
# environment; the server's own (its warm-up play's) are in its directory.
PER_RUN = {
    "AWX_ISOLATED_DATA_DIR": "warm",
    "ANSIBLE_CACHE_PLUGIN_CONNECTION": "warm/fact_cache",
    "ANSIBLE_LOCAL_TEMP": "tmp",
}


class ServerUnavailable(Exception):
    """The fork server could not start; the message says why."""


def fork_record(record: Path) -> Path:
    """Where a fork of ``record``'s command records itself: a name the sweeper globs."""
    return record.with_name(f"{record.stem}.fork.rec")


class ForkServers:
    """The fork servers of this process, by what they fixed at import; each run by
    ``python`` (this interpreter: the one Ansible is installed in)."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._servers: dict[tuple[tuple[str, str], ...], Server] = {}
        self._failed: dict[tuple[tuple[str, str], ...], str] = {}
        # One per event loop: tests run several loops in one process.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._locks = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def _lock(self) -> asyncio.Lock:
        with self._guard:
            return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def command(
        self, env: dict[str, str], record: Path, argv: list[str]
    ) -> tuple[list[str], str]:
        """``argv`` (an ``ansible-playbook`` command) through a fork server, and ``""``;
        or ``argv`` itself and why the fast path is unavailable."""
        key = tuple(sorted(fixed_at_import(env).items()))
        async with self._lock():
            if key in self._failed:
                return argv, self._failed[key]
            server = self._servers.get(key)
            if server is None or not server.alive():
                try:
                    server = self._servers[key] = await _start(self.python, env)
                except ServerUnavailable as error:
                    self._failed[key] = str(error)
                    return argv, str(error)
        client = [sys.executable, "-I", "-S", str(CLIENT), str(server.socket)]
        return [*client, str(fork_record(record)), "--", *argv], ""

    def stop(self) -> None:
        """Stop every server (each kills whatever its playbooks still run)."""
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


async def _start(python: str, env: dict[str, str]) -> Server:
    directory = Path(tempfile.mkdtemp(prefix="aegir-ansible-"))
    server = _spawn(python, env, directory)
    if not await asyncio.to_thread(ready, server.process, READY, START_TIMEOUT):
        why = last_line(directory / "server.log")
        server.stop()
        raise ServerUnavailable(f"the fork server did not start: {why}")
    return server


def _spawn(python: str, env: dict[str, str], directory: Path) -> Server:
    """Called in the event loop's thread, not a pool's: the server's PR_SET_PDEATHSIG
    follows the thread that started it. A fork-exec and a directory, once per worker."""
    (directory / "warm").mkdir()
    server_env = env | {name: str(directory / path) for name, path in PER_RUN.items()}
    argv = [python, str(SERVER), str(directory / "socket"), str(os.getpid())]
    with open(directory / "server.log", "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=server_env,
            cwd=directory,
            start_new_session=True,
        )
    return Server(process, directory)


servers = ForkServers()
atexit.register(servers.stop)
