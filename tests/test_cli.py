"""The ``aegir`` command as a user runs it: the embedded default, and the catalogue."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.services import clean_env, free_port, run_aegir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "a-long-enough-password"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group (redis, relay, worker, API)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Embedded:
    process: subprocess.Popen[bytes]
    base_url: str
    api_port: int
    redis_port: int
    var_dir: Path
    log: Path
    env: dict[str, str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def aegir(self, *args: str, stdin: str = "") -> str:
        """``aegir ARGS`` with the environment of the running ``aegir run``; its stdout."""
        return run_aegir(self.env, *args, stdin=stdin)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    """``aegir run`` in a process group of its own, once /readyz says all is well."""
    var_dir = tmp_path / "var"
    api_port, redis_port = free_port(), free_port()
    while redis_port == api_port:
        redis_port = free_port()
    env = clean_env(
        AEGIR_VAR_DIR=str(var_dir),
        AEGIR_PORT=str(api_port),
        AEGIR_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )  # no AEGIR_DATABASE_URL: the default is a SQLite file under the var dir
    log = tmp_path / "aegir.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "aegir"), "up"],
            cwd=ROOT,  # where a user types `make run`
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{api_port}"
    running = Embedded(process, base_url, api_port, redis_port, var_dir, log, env)
    try:
        _wait_ready(running)
        yield running
    finally:
        if process.poll() is None:  # the test failed before stopping it: stop it all
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_ready(running: Embedded) -> None:
    deadline = time.monotonic() + 90
    last = "no answer"
    with httpx.Client(base_url=running.base_url, trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                pytest.fail(
                    f"aegir run exited with {running.process.returncode}:\n{running.output()}"
                )
            try:
                response = http.get("/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.2)
    pytest.fail(f"/readyz never answered 200 (last: {last}):\n{running.output()}")


@pytest.mark.timeout(180)
def test_run_serves_and_stops_on_ctrl_c(embedded: Embedded) -> None:
    with httpx.Client(base_url=embedded.base_url, trust_env=False, timeout=10) as anonymous:
        ready = anonymous.get("/readyz")
        assert ready.json() == {
            "status": "ok",
            "checks": {"database": "ok", "redis": "ok"},
        }, ready.text
        assert (embedded.var_dir / "aegir.sqlite3").is_file()
        refused = anonymous.get("/api/v1/servers")
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/openapi.json").status_code == 401

    # The first account, as the operator makes it: same environment, so the same database.
    embedded.aegir(
        "user", "create", "admin", "--admin", "--team", "ops", "--role", "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    token = embedded.aegir("token", "create", "admin", "--name", "test").strip()
    assert token and "\n" not in token

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=embedded.base_url, headers=headers, trust_env=False, timeout=10
    ) as http:
        me = http.get("/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "admin"
        assert [team["team"] for team in me.json()["teams"]] == ["ops"]

        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        openapi = http.get("/openapi.json")
        assert openapi.status_code == 200
        assert "/api/v1/servers" in openapi.json()["paths"]

        body = {"name": "web1.example.com", "fields": {"hostname": "web1.example.com"}}
        created = http.post("/api/v1/servers", json=body)
        assert created.status_code == 201, created.text
        server = created.json()
        found = http.get(f"/api/v1/servers/{server['id']}")
        assert found.status_code == 200, found.text
        assert found.json()["name"] == "web1.example.com"
        assert found.json()["fields"]["hostname"] == "web1.example.com"
        listed = http.get("/api/v1/servers").json()
        assert [item["id"] for item in listed["items"]] == [server["id"]]

    # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
    os.killpg(embedded.process.pid, signal.SIGINT)
    try:
        code = embedded.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"aegir run did not stop within 60 s of SIGINT:\n{embedded.output()}")
    assert code == 0, embedded.output()
    assert "aegir: stopped" in embedded.output()
    assert not _accepts(embedded.redis_port), "the Redis server that aegir started still runs"
    assert not _accepts(embedded.api_port), "the API still answers"
    assert not _group_alive(embedded.process.pid), "a process that aegir started still runs"


@pytest.mark.timeout(180)
def test_run_stops_everything_on_sigint_to_its_own_process(embedded: Embedded) -> None:
    """SIGINT to aegir alone: aegir itself must stop the Redis server and API it started."""
    os.kill(embedded.process.pid, signal.SIGINT)
    try:
        code = embedded.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"aegir run did not stop within 60 s of SIGINT:\n{embedded.output()}")
    assert code == 0, embedded.output()
    assert not _accepts(embedded.redis_port), "the Redis server that aegir started still runs"
    assert not _accepts(embedded.api_port), "the API still answers"
    assert not _group_alive(embedded.process.pid), "a process that aegir started still runs"


def test_catalog_lists_site_operations_and_plugin() -> None:
    result = subprocess.run(
        [str(BIN / "aegir"), "catalog"],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("Site (sites)")
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines)
    )
    site_entries = {line.split()[0] for line in lines[start + 1 : end]}
    builtin = {"install", "verify", "backup", "restore", "clone", "migrate", "disable", "enable"}
    assert builtin | {"delete", "login"} <= site_entries, result.stdout
    # The example plugin adds an operation to sites, and says it is loaded.
    assert "purge_cache" in site_entries, result.stdout
    purge = next(line for line in lines[start + 1 : end] if line.split()[0] == "purge_cache")
    assert "purge:cache_purge" in purge
    assert "Cache server (cache-servers)" in lines
    assert any(
        line.startswith("plugins:") and "example" in line.split(":", 1)[1] for line in lines
    ), result.stdout
