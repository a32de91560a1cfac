"""The Ansible fork server: Ansible imported and warmed once per worker, a fork per playbook.

``ansible-playbook`` spends most of its start-up before the first task: imports, the
collection loader's routing tables and plugin documentation (YAML), plugin loading,
play set-up. This process pays that once: it imports Ansible and runs one trivial play
(``warm``), then serves a Unix socket (``python forkserver.py SOCKET WORKER_PID``,
started by ``executors.ansible.forks``). For each playbook, ``forkclient.py`` sends its
argv, environment, working directory and its stdin/stdout/stderr (``SCM_RIGHTS``); the
server forks a child that adopts them and runs ``PlaybookCLI`` as ``ansible-playbook``
would, and answers the exit code. ansible-runner, which started the client, sees an
ordinary process: events, cancel and exit codes are unchanged.

What keeps a fork as contained as the process it stands for:

- the child leads a process group of its own and records it (pid, group, start time and
  the run's ``AEGIR_RUN_PROCESS`` tag) in the record file the client names, so the
  sweeper finds it as it finds a shepherd (``executors.processes.stop_recorded``);
- it runs with the client's own environment (the run's tag included, inherited by
  every command it starts), Ansible's settings read again from it;
- when the client's connection closes before the child ends (the client was killed: a
  cancel, a timeout, its worker's death), the child's group is killed;
- the child dies with the server (``PR_SET_PDEATHSIG``), and the server with its
  worker; on its way out the server kills every process it has;
- what a playbook leaves behind is stopped when it ends, as the shepherd does.

Environment variables read when Ansible is imported (plugin and collection paths) must
be the server's own: a request with other values is refused, and the client then runs
``ansible-playbook`` itself, saying why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
# How long a client may take to send its request once connected.
REQUEST_TIMEOUT = 5.0
READY = b"ready\n"
# Read when Ansible is imported, or by the loaders the warm-up filled: a fork must not
# run under other values than the server's.
FIXED_AT_IMPORT = ("ANSIBLE_HOME", "ANSIBLE_CONFIG", "PYTHONPATH")


def _load_shepherd() -> ModuleType:
    # By path: the executors package would import the whole app, and putting its
    # directory on sys.path would shadow ``ansible`` with executors/ansible.
    spec = importlib.util.spec_from_file_location("_aegir_shepherd", HERE.parent / "shepherd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shepherd = _load_shepherd()


def fixed_at_import(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` that a fork of this server cannot change."""
    return {
        key: value
        for key, value in env.items()
        if key in FIXED_AT_IMPORT
        or (key.startswith("ANSIBLE_") and (key.endswith("_PLUGINS") or "COLLECTIONS" in key))
    }


def reload_settings() -> None:
    """Ansible's settings (``ansible.constants``) read again from ``os.environ``."""
    from ansible import constants

    for name in constants.config.get_configuration_definitions():
        value = constants.config.get_config_value(name, variables=vars(constants))
        constants.set_constant(name, value)


def forget_last_playbook() -> None:
    """What ansible-core (2.19) keeps per process from a playbook's command line: a fork
    would otherwise inherit the warm-up's arguments, extra variables and vault secrets."""
    from ansible.parsing.vault import VaultSecretsContext
    from ansible.utils import vars as ansible_vars
    from ansible.utils.context_objects import GlobalCLIArgs

    GlobalCLIArgs._Singleton__instance = None
    VaultSecretsContext._current = None
    ansible_vars.load_extra_vars.extra_vars = None
    ansible_vars.load_options_vars.options_vars = None


def play(argv: list[str]) -> int:
    """``ansible-playbook argv[1:]`` in this process; its exit code."""
    from ansible.cli.playbook import PlaybookCLI

    forget_last_playbook()
    try:
        PlaybookCLI.cli_executor(argv)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def warm(directory: Path) -> None:
    """Run one trivial play here, so that forks start with Ansible's loaders filled.

    It runs under the server's environment: the callbacks ansible-runner asks for are
    loaded too (their events go to a directory of the server's)."""
    playbook = directory / "warm.yml"
    task = {"command": "true", "changed_when": False}
    playbook.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [task]}]))
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = directory / "warm-inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": local}}}))
    code = play(["ansible-playbook", "-i", str(inventory), str(playbook)])
    forget_last_playbook()
    if code != 0:
        raise RuntimeError(f"the warm-up play failed (exit code {code})")


def module_cache() -> str:
    """Where this process keeps the modules it built (AnsiballZ: a module and the
    module_utils it imports, found by parsing them; no arguments, no secrets)."""
    from ansible import constants

    return os.path.join(constants.DEFAULT_LOCAL_TMP, "ansiballz_cache")


def share_module_cache(shared: str) -> None:
    """A fork's own temporary directory (per run), but the server's built modules:
    built once per worker, not once per playbook. Ansible locks each entry while it
    builds it, for its own forks; the same lock serves ours."""
    os.makedirs(shared, exist_ok=True)
    own = module_cache()
    if not os.path.lexists(own):
        os.symlink(shared, own)


def fresh_callback_state() -> None:
    """ansible-runner's stdout callback keeps, from its import (the warm-up's), where it
    writes events (``AWX_ISOLATED_DATA_DIR``): a fork gets a context of its own."""
    for module in list(sys.modules.values()):
        if hasattr(module, "EventContext") and hasattr(module, "event_context"):
            module.event_context = module.EventContext()  # type: ignore[attr-defined]


@dataclass
class Fork:
    """One playbook: the child running it and the client waiting for it."""

    pid: int
    pidfd: int
    client: socket.socket
    record: str
    tag: str
    stderr: int  # the client's stderr, for a line about leftovers
    status: int | None = None


@dataclass
class Server:
    listener: socket.socket
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    forks: dict[int, Fork] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=lambda: fixed_at_import(dict(os.environ)))
    modules: str = field(default_factory=module_cache)
    # A pipe that a signal's arrival writes to (signal.set_wakeup_fd): its two ends.
    wake: int = -1
    wakeup: int = -1

    def serve(self) -> None:
        """Until SIGTERM (the worker stops it, or died): then back to ``main``, which
        stops everything, between two steps of this loop, never within one."""
        self.wake, self.wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self.wake, selectors.EVENT_READ, "wake")
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(self.wakeup)
        signal.signal(signal.SIGTERM, _noted)
        while True:
            for key, _mask in self.selector.select(timeout=1.0):
                if key.data == "wake":
                    return
                if key.data is None:
                    self._accept()
                else:
                    kind, fork = key.data
                    self._client_gone(fork) if kind == "client" else self._ended(fork)
            self._reap()

    # Requests.

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            client.settimeout(REQUEST_TIMEOUT)
            request, fds = _receive(client)
            refused = self._refusal(client, request)
            if refused:
                client.sendall(f"refused {refused}".encode())
                client.close()
                return
            self._start(client, request, fds)
        except (OSError, ValueError) as error:
            _say(f"request not served: {error}")
            client.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _refusal(self, client: socket.socket, request: dict[str, Any]) -> str:
        uid = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8]
        if int.from_bytes(uid, sys.byteorder) != os.getuid():
            return "the client is another user"
        if os.path.basename(request["argv"][0]) != "ansible-playbook":
            return f"{request['argv'][0]} is not ansible-playbook"
        theirs = fixed_at_import(request["env"])
        for key in sorted(set(theirs) | set(self.fixed)):
            if theirs.get(key) != self.fixed.get(key):
                return f"{key} differs from the fork server's"
        return ""

    def _start(self, client: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._child(client, request, fds)
            except BaseException:  # a fork must never return into the server's loop
                traceback.print_exc()
            finally:
                os._exit(code)
        tag = request["env"].get(shepherd.TAG, "")
        fork = Fork(pid, os.pidfd_open(pid), client, request["record"], tag, os.dup(fds[2]))
        self.forks[pid] = fork
        _write_record(fork)
        client.setblocking(False)
        self.selector.register(client, selectors.EVENT_READ, ("client", fork))
        self.selector.register(fork.pidfd, selectors.EVENT_READ, ("child", fork))

    def _child(self, client: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
        os.setpgid(0, 0)
        shepherd.prctl(shepherd.PR_SET_PDEATHSIG, signal.SIGKILL)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGUSR2):
            signal.signal(signum, signal.SIG_DFL)
        client.close()
        self._close_all()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        reload_settings()
        share_module_cache(self.modules)
        fresh_callback_state()
        warnings.filterwarnings("ignore", "AnsibleCollectionFinder has already been configured")
        code = play(request["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
        return code

    def _close_all(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self.wake)
        os.close(self.wakeup)
        for fork in self.forks.values():
            for fd in (fork.pidfd, fork.stderr):
                os.close(fd)
            fork.client.close()
        self.selector.close()
        self.listener.close()

    # Ends.

    def _client_gone(self, fork: Fork) -> None:
        """The client closed its end first: killed (cancel, timeout, its worker's death)."""
        self.selector.unregister(fork.client)
        _kill_group(fork.pid)

    def _ended(self, fork: Fork) -> None:
        if fork.status is None:
            _pid, fork.status = os.waitpid(fork.pid, 0)
        code = os.waitstatus_to_exitcode(fork.status)
        code = code if code >= 0 else 128 - code
        self._stop_leftovers(fork)
        self.selector.unregister(fork.pidfd)
        os.close(fork.pidfd)
        Path(fork.record).unlink(missing_ok=True)
        del self.forks[fork.pid]
        with contextlib.suppress(OSError):  # killed already: no one waits for the code
            fork.client.sendall(f"exit {code}".encode())
        if fork.client.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fork.client)
            fork.client.close()
        os.close(fork.stderr)

    def _stop_leftovers(self, fork: Fork) -> None:
        """As the shepherd does: nothing a playbook started outlives it, but an SSH
        connection (ControlPersist): kept for the worker's next playbooks, it runs no
        command, and it closes itself once unused for a minute."""
        left = shepherd.members(fork.pid)
        # Not ours: the other forks, what they run, and their runs' tagged processes.
        others = shepherd.descendants(os.getpid()) - set(self.forks)
        if others and fork.tag:
            left |= others & shepherd.tagged(fork.tag)
        if others and len(self.forks) == 1:
            # No other playbook runs: what is left is this one's (ssh rewrites its
            # environment, tag included, when it names itself "ssh: PATH [mux]").
            left |= others
        left = {pid for pid in left if not _ssh_master(pid)}
        if not left:
            return
        names = ", ".join(sorted({shepherd.name(pid) for pid in left}))
        line = f"aegir: the command left {len(left)} process(es) running ({names}); stopping them"
        with contextlib.suppress(OSError):
            os.write(fork.stderr, f"{line}\n".encode())
        for pid in left:
            shepherd.send(pid, signal.SIGKILL)

    def _reap(self) -> None:
        """Reap adopted orphans; a fork's own status is kept for ``_ended``."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.forks:
                self.forks[pid].status = status

    def stop(self) -> None:
        """Everything this server started, killed; its records and socket removed."""
        for fork in list(self.forks.values()):
            _kill_group(fork.pid)
        for pid in shepherd.descendants(os.getpid()):
            shepherd.send(pid, signal.SIGKILL)
        for fork in self.forks.values():
            Path(fork.record).unlink(missing_ok=True)
        Path(self.listener.getsockname()).unlink(missing_ok=True)


def _receive(client: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds = shepherd.receive(client, 3)
    try:
        request = json.loads(data)
        if not isinstance(request, dict):
            raise ValueError("the request is not an object")
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _write_record(fork: Fork) -> None:
    start = shepherd.start_time(fork.pid)
    with open(fork.record, "w") as handle:
        handle.write(f"{fork.pid} {fork.pid} {start} {fork.tag or '-'}\n")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _ssh_master(pid: int) -> bool:
    """An OpenSSH connection master, as it names itself ("ssh: PATH [mux]")."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"ssh: ") and b"[mux]" in command


def _say(line: str) -> None:
    sys.stderr.write(f"aegir fork server: {line}\n")
    sys.stderr.flush()


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def _noted(_signum: int, _frame: object) -> None:
    """Nothing here: the wake-up file descriptor tells the loop."""


def main(args: list[str]) -> int:
    if len(args) != 2:
        sys.stderr.write("usage: forkserver.py SOCKET WORKER_PID\n")
        return 2
    path, worker = Path(args[0]), int(args[1])
    signal.signal(signal.SIGTERM, _stop)
    shepherd.prctl(shepherd.PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != worker:  # the worker died before we asked to be told
        return 137
    # Whatever a playbook starts in a session of its own comes back to us when its
    # parent exits, so it can be stopped with the rest.
    shepherd.prctl(shepherd.PR_SET_CHILD_SUBREAPER, 1)
    ready = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    warm(path.parent)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    server = Server(listener)
    os.write(ready, READY)
    os.close(ready)
    try:
        server.serve()
    except _Stop:
        pass
    finally:
        server.stop()
        # Made for this server alone (executors.ansible.forks); its worker may be gone.
        shutil.rmtree(path.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.pop(0)  # executors/ansible: nothing of ours is imported by name
    sys.exit(main(sys.argv[1:]))
