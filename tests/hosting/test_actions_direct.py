"""Actions run their role without ansible-playbook (``executors.ansible.direct``), locally
and over SSH to an sshd of our own, through the whole stack: the same answers and the same
drush calls as the playbook gave, failures with their message, timeouts, masked secrets,
and roles outside the subset left to the playbook."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from app.entities.entity.models import Entity
from tests.fixtures.hosting import (
    Hosting,
    MariaDBServer,
    NginxServer,
    PhpFpmServer,
    PostgresServer,
    SshServer,
    sshd_server,
)
from tests.fixtures.services import alembic_upgrade, free_port
from tests.fixtures.stack import Stack, wait_for

LINK = "/user/reset/1/1764150000/Zm9vYmFyLXRva2Vu/login"
FALLBACK = "runs through ansible-playbook"


@pytest.fixture(scope="module")
def direct(
    tmp_path_factory: pytest.TempPathFactory,
    nginx: NginxServer,
    mariadb: MariaDBServer,
    site_postgres: PostgresServer,
    php_fpm_or_why: PhpFpmServer | str,
) -> Iterator[Hosting]:
    """Aegir on the suite's servers, with the test actions of ``direct_catalog``."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('direct') / 'aegir.sqlite3'}"
    alembic_upgrade(url)
    stack = Stack(url)
    modules = ["tests.fixtures.catalog", "tests.hosting.direct_catalog"]
    stack.env["AEGIR_CATALOG_MODULES"] = json.dumps(modules)
    try:
        stack.start()
        hosting = Hosting.create(
            stack,
            tmp_path_factory.mktemp("web-direct"),
            nginx,
            mariadb,
            site_postgres,
            php_fpm_or_why,
        )
        yield hosting
        hosting.http.close()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def sshd(direct: Hosting) -> Iterator[SshServer]:
    with sshd_server(direct.stack.root / "var" / "ssh") as server:
        yield server


@pytest.fixture(scope="module")
def remote(direct: Hosting, sshd: SshServer) -> dict[str, Any]:
    """A server entity reached over SSH (the same machine, through our sshd)."""
    fields = {"hostname": "127.0.0.1", "connection": "ssh", "ssh_user": sshd.user,
              "ssh_port": sshd.port, "nginx_conf": str(direct.nginx.conf)}  # fmt: skip
    response = direct.http.post("/api/v1/servers", json={"name": "remote", "fields": fields})
    assert response.status_code == 201, response.text
    server: dict[str, Any] = response.json()
    return server


def _platform(hosting: Hosting, name: str, server: dict[str, Any] | None) -> dict[str, Any]:
    if server is None:
        return hosting.platform(name, flavor="drupal")
    saved, hosting.server = hosting.server, server
    try:
        return hosting.platform(name, flavor="drupal")
    finally:
        hosting.server = saved


def _act(hosting: Hosting, site: dict[str, Any], action: str) -> Any:
    _as_installed(hosting, site)
    return hosting.http.post(f"/api/v1/sites/{site['id']}/actions/{action}")


def _as_installed(hosting: Hosting, site: dict[str, Any]) -> None:
    """What an install would have left (Log in needs an installed site), without running
    one: these tests are about the action's path, and the install's run on its own."""
    url = hosting.stack.env["AEGIR_DATABASE_URL"].replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(Entity).where(Entity.id == uuid.UUID(site["id"])).values(state="enabled")
            )
    finally:
        engine.dispose()


def _ask(hosting: Hosting, site: dict[str, Any], action: str) -> None:
    """An action whose answer does not matter (its worker is killed meanwhile)."""
    with contextlib.suppress(httpx.HTTPError):
        _act(hosting, site, action)


def _drush_calls(platform: dict[str, Any]) -> list[list[str]]:
    calls = Path(platform["fields"]["root"]) / "drush-calls.jsonl"
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.parametrize("over", ["local", "ssh"])
def test_login_answers_the_link_and_calls_drush_as_the_playbook_did(
    direct: Hosting, request: pytest.FixtureRequest, over: str
) -> None:
    server = request.getfixturevalue("remote") if over == "ssh" else None
    platform = _platform(direct, f"drupal-{over}", server)
    site = direct.site(f"{over}.example.test", platform)
    for _ in range(2):
        response = _act(direct, site, "login")
        assert response.status_code == 200, response.text
        assert response.json()["url"] == f"http://{over}.example.test{LINK}"
    root = platform["fields"]["root"]
    uli = ["uli", f"--root={root}", f"--uri=http://{over}.example.test", "--no-browser"]
    assert _drush_calls(platform) == [uli, uli]
    assert f"role site_login {FALLBACK}" not in direct.stack.log("worker")


def test_login_over_ssh_reuses_one_connection(
    direct: Hosting, sshd: SshServer, remote: dict[str, Any]
) -> None:
    site = direct.site("reuse.example.test", _platform(direct, "drupal-reuse", remote))
    before = sshd.log.read_text().count("Accepted publickey")
    for _ in range(3):
        assert _act(direct, site, "login").status_code == 200
    # At most one new connection (none if the other test's is still open).
    assert sshd.log.read_text().count("Accepted publickey") - before <= 1


def test_an_unreachable_server_answers_why(direct: Hosting, sshd: SshServer) -> None:
    fields = {"hostname": "127.0.0.1", "connection": "ssh", "ssh_user": sshd.user,
              "ssh_port": free_port(), "nginx_conf": str(direct.nginx.conf)}  # fmt: skip
    response = direct.http.post("/api/v1/servers", json={"name": "away", "fields": fields})
    assert response.status_code == 201, response.text
    site = direct.site("away.example.test", _platform(direct, "drupal-away", response.json()))
    response = _act(direct, site, "login")
    assert response.status_code == 502
    detail = response.json()["detail"]
    # In words: the failing step's own message, no exit code or Ansible recap.
    assert detail.startswith("Log in failed: UNREACHABLE!") and "Connection refused" in detail


def test_a_failed_assert_answers_its_message(direct: Hosting) -> None:
    platform = direct.platform("static-login", page="Static")
    site = direct.site("static.example.test", platform)
    response = _act(direct, site, "login")
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "static-login is a static platform: there is nothing to log in to" in detail
    assert detail.startswith("Log in failed: ") and "PLAY RECAP" not in detail


def test_a_role_outside_the_subset_runs_through_the_playbook(direct: Hosting) -> None:
    site = direct.site("fallback.example.test", direct.platform("static-fallback"))
    response = _act(direct, site, "fallback")
    assert response.status_code == 200, response.text
    assert response.json() == {"said": "from the playbook"}
    said = [line for line in direct.stack.log("worker").splitlines() if FALLBACK in line]
    assert len(said) == 1
    assert "role direct_fallback" in said[0] and "ansible.builtin.debug" in said[0]


@pytest.mark.parametrize("over", ["local", "ssh"])
def test_the_action_timeout_stops_the_command(
    direct: Hosting, request: pytest.FixtureRequest, over: str
) -> None:
    server = request.getfixturevalue("remote") if over == "ssh" else None
    platform = _platform(direct, f"drupal-slow-{over}", server)
    site = direct.site(f"slow-{over}.example.test", platform)
    response = _act(direct, site, "slow")
    assert response.status_code == 504, response.text
    assert "was stopped" in response.json()["detail"]
    pid = int((Path(platform["fields"]["root"]) / f"slow-{over}.example.test.pid").read_text())
    wait_for(lambda: not _alive(pid), f"the command (pid {pid}) to be stopped", timeout=15)


@pytest.mark.parametrize("over", ["local", "ssh"])
def test_a_dead_worker_leaves_no_command_running(
    direct: Hosting, request: pytest.FixtureRequest, over: str
) -> None:
    """Locally the shepherd stops it; over SSH the master connection goes with the worker,
    and the server stops the command when its channel closes. (With its worker dead, no
    one enforces the action's timeout: nothing else would stop it.)"""
    server = request.getfixturevalue("remote") if over == "ssh" else None
    platform = _platform(direct, f"drupal-stuck-{over}", server)
    site = direct.site(f"stuck-{over}.example.test", platform)
    pid_file = Path(platform["fields"]["root"]) / f"stuck-{over}.example.test.pid"
    asking = threading.Thread(target=_ask, args=(direct, site, "stuck"), daemon=True)
    asking.start()
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the command"))
    direct.stack.kill("worker")
    try:
        wait_for(lambda: not _alive(pid), f"the command (pid {pid}) to be stopped", timeout=15)
    finally:
        direct.stack.start_process("worker")
        asking.join(30)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_secret_given_to_the_command_is_masked_in_the_answer(direct: Hosting) -> None:
    site = direct.site("secret.example.test", direct.platform("static-secret"))
    token = "tok-" + os.urandom(8).hex()
    run = direct.run(site, "set_secret", {"secret": {"token": token}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    response = _act(direct, site, "secret")
    assert response.status_code == 200, response.text
    assert response.json() == {"said": "token=****"}
    assert token not in direct.stack.log("worker")
