"""An unexpected error answers a clean 500, and the connection serves the next request.

Against a real uvicorn process, served as ``aegir serve`` serves the API: the client
keeps one connection open (keep-alive) and sends its next request on it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import pytest

from tests.fixtures.faulty_app import BUG
from tests.fixtures.services import clean_env, free_port
from tests.fixtures.stack import ROOT, wait_for


@pytest.fixture
def server(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The faulty app's port, and its log."""
    port = free_port()
    env = clean_env(
        AEGIR_ENV="test",
        AEGIR_DATABASE_URL=database_url,
        AEGIR_REDIS_URL=redis_url,
        AEGIR_VAR_DIR=str(tmp_path / "var"),
        AEGIR_PORT=str(port),
    )
    log = tmp_path / "api.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.faulty_app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _healthy(port), "the API to answer")
        yield port, log
    finally:
        process.terminate()
        process.wait(20)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _exchange(
    sock: socket.socket, conn: h11.Connection, method: str, target: str
) -> tuple[int, bytes]:
    """One request and its answer on an open connection, which must stay open."""
    headers = [("Host", "127.0.0.1"), ("Content-Length", "0")]
    sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)))
    sock.sendall(conn.send(h11.EndOfMessage()))
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()  # refused if the server said it would close
            return status, body
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError(f"{method} {target}: the server closed the connection")


def test_an_unexpected_error_answers_500_and_the_connection_serves_the_next_request(
    server: tuple[int, Path],
) -> None:
    port, log = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        conn = h11.Connection(h11.CLIENT)
        # Twice: the failed write was undone, and the next write got its turn.
        for _ in range(2):
            status, body = _exchange(sock, conn, "POST", "/boom")
            assert status == 500
            assert "internal error" in json.loads(body)["detail"]
            assert _exchange(sock, conn, "GET", "/healthz") == (200, b'{"status":"ok"}')
    assert log.read_text().count(f"RuntimeError: {BUG}") == 2  # the operator sees each one
