"""The client of the Ansible fork server: ``ansible-playbook`` for ansible-runner, run warm.

``python -I -S forkclient.py SOCKET RECORD -- ansible-playbook ARG...`` (built by
``executors.ansible.forks``, under a shepherd) hands its argv, environment, working
directory and stdin/stdout/stderr to the fork server (``forkserver.py``), which runs
the playbook in a fork that writes straight to them; it then waits and exits with the
playbook's exit code. Killed (a cancel or a timeout kills its process group), its
connection closes and the server kills the playbook.

When the server cannot take the playbook (gone, or refusing it), the client says why in
one line on stderr and becomes ``ansible-playbook`` itself: the old way, still under its
shepherd. Like the shepherd, it imports only what it must: it starts before every
playbook.
"""

from __future__ import annotations

import json
import os
import socket
import sys

SERVER_GONE = 1


def _say(line: str) -> None:
    sys.stderr.write(f"aegir: {line}\n")
    sys.stderr.flush()


def _fallback(argv: list[str], why: str) -> int:
    _say(f"Ansible fast path unavailable ({why}); running ansible-playbook")
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - an argv list, no shell
    except OSError as error:
        _say(f"cannot start {argv[0]}: {error.strerror}")
    return 127


def _request(server: str, record: str, argv: list[str]) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.connect(server)
    body = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "record": record}
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    client.sendmsg([json.dumps(body).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    return client


def run(server: str, record: str, argv: list[str]) -> int:
    try:
        client = _request(server, record, argv)
        answer = client.recv(4096).decode()
    except OSError as error:
        return _fallback(argv, f"fork server: {error.strerror or error}")
    if answer.startswith("refused "):
        client.close()
        return _fallback(argv, answer[len("refused ") :])
    if answer.startswith("exit "):
        return int(answer[len("exit ") :])
    # The server died under the playbook (its worker died): the playbook died with it.
    _say("the Ansible fork server went away during the playbook")
    return SERVER_GONE


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: forkclient.py SOCKET RECORD -- ansible-playbook [ARG...]\n")
        return 2
    return run(args[0], args[1], args[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
