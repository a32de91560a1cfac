"""A second run of a task that is safe to run again changes nothing, and nginx reloads
only when a vhost changed: what Ansible's PLAY RECAP and the run's log say, and what
nginx itself logs, through the whole stack against our own servers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.catalog.registry import build_catalog
from app.catalog.types import AnsibleRole
from tests.fixtures.hosting import Hosting, MariaDBServer, NginxServer, PhpFpmServer, PostgresServer
from tests.fixtures.services import alembic_upgrade
from tests.fixtures.stack import Stack, wait_for
from tests.hosting.again_catalog import AGAIN

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"^\S+\s*:\s+ok=\d+\s+changed=(\d+)\s")
RELOAD_HANDLER = "RUNNING HANDLER [aegir_common : Reload nginx]"
# What nginx's master writes to its error log (level notice) when told to reload.
RELOADED = "(SIGHUP) received"
# Safe to run again, but not alone: it undoes the steps its run completed, and alone
# its run completed none (it is run again with the whole install operation instead).
NOT_ALONE = {"site_install_cleanup": "undoes the steps its own run completed"}


@pytest.fixture(scope="module")
def again(
    tmp_path_factory: pytest.TempPathFactory,
    nginx: NginxServer,
    mariadb: MariaDBServer,
    site_postgres: PostgresServer,
    php_fpm_or_why: PhpFpmServer | str,
) -> Iterator[Hosting]:
    """Aegir on the suite's servers, with an ``again_<key>`` site operation per safe task."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('again') / 'aegir.sqlite3'}"
    alembic_upgrade(url)
    stack = Stack(url)
    modules = ["tests.fixtures.catalog", "tests.hosting.again_catalog"]
    stack.env["AEGIR_CATALOG_MODULES"] = json.dumps(modules)
    try:
        stack.start()
        hosting = Hosting.create(
            stack,
            tmp_path_factory.mktemp("web-again"),
            nginx,
            mariadb,
            site_postgres,
            php_fpm_or_why,
        )
        yield hosting
        hosting.http.close()
    finally:
        stack.stop()


def _lines(run: dict[str, Any]) -> list[str]:
    return [ANSI.sub("", line) for line in run["log"]]


def changes(run: dict[str, Any]) -> list[str]:
    """The tasks that reported a change, from the log; the PLAY RECAP's count must agree."""
    changed, task = [], ""
    counted = []
    for line in _lines(run):
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip("* ")
        elif line.startswith("changed: ["):
            changed.append(task)
        elif found := RECAP.match(line):
            counted.append(int(found.group(1)))
    assert counted, "no PLAY RECAP in the log:\n" + "\n".join(_lines(run))
    assert sum(counted) == len(changed), "\n".join(_lines(run))
    return changed


def changed_by(
    hosting: Hosting, entity: dict[str, Any], op: str, values: dict[str, Any] | None = None
) -> list[str]:
    """The tasks a run of ``op`` changed; the run must succeed."""
    run = hosting.run(entity, op, values)
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return changes(run)


def run_twice(
    hosting: Hosting, entity: dict[str, Any], op: str, values: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """What each of two runs of ``op`` changed."""
    return changed_by(hosting, entity, op, values), changed_by(hosting, entity, op, values)


def reloads(nginx: NginxServer) -> int:
    return (nginx.root / "error.log").read_text(errors="replace").count(RELOADED)


def test_every_task_safe_to_run_again_is_run_again_here() -> None:
    """An Ansible task newly marked safe to run again gets a test here, or a reason why
    not. (The Kubernetes back-end's tasks are idempotent by server-side apply and named
    Jobs: tests/kubernetes.)"""
    catalog = build_catalog(plugins=False)
    site = catalog.kind("site")
    # The certificate tasks have operations of their own, run again with a certificate
    # in place by tests/hosting/test_https.py (nothing changes, nginx does not reload).
    covered = {site.tasks[key] for key in (*AGAIN, "verify", "certificate", "renew_certificate")}
    covered |= {"server_verify", "platform_deploy", "platform_verify", *NOT_ALONE}
    covered |= {"backup_prune"}  # run twice in tests/hosting/test_backup_retention.py
    safe = {
        name
        for name, task in catalog.tasks.items()
        if task.safe_to_rerun and isinstance(task.executor, AnsibleRole)
    }
    assert safe == covered


def test_verifying_a_server_and_a_platform_again_changes_nothing(again: Hosting) -> None:
    first, second = run_twice(again, again.server, "verify")
    assert (first, second) == ([], [])
    platform = again.platform("again-static", page="Again")
    first, second = run_twice(again, platform, "verify")
    assert (first, second) == ([], [])


def test_deploying_the_same_commit_again_changes_nothing(again: Hosting) -> None:
    page = "<h1>From git, again</h1>\n"
    with again.served_git("again-git", page, host="localhost") as (url, _head):
        root = again.web / "platforms" / "again-git"
        body = {
            "name": "again-git",
            "fields": {"root": str(root), "flavor": "static"},
            "references": {"server": again.server["id"]},
        }
        response = again.http.post("/api/v1/platforms", json=body)
        assert response.status_code == 201, response.text
        values = {"deploy": {"source": "git", "git_url": url}}
        first, second = run_twice(again, response.json(), "verify", values)
    assert any("Clone" in task for task in first), first
    assert second == []
    assert (root / "index.html").read_text() == page


def _installed(hosting: Hosting, domain: str, platform: dict[str, Any]) -> dict[str, Any]:
    site = hosting.site(domain, platform)
    run = hosting.run(site, "install", {"database": {"engine": "mariadb"}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return site


def test_a_site_s_safe_tasks_change_nothing_the_second_time(again: Hosting) -> None:
    site = _installed(again, "again.example.test", again.platform("again-site", page="Again"))
    # The install ran these once: this is their second run.
    found = {key: changed_by(again, site, f"again_{key}") for key in ("files", "settings", "vhost")}
    found["verify"] = run_twice(again, site, "verify")[1]
    assert again.run(site, "disable")["status"] == "succeeded"
    found["disable"] = changed_by(again, site, "again_disable")
    assert again.run(site, "enable")["status"] == "succeeded"
    found["enable"] = changed_by(again, site, "again_enable")
    assert {key: tasks for key, tasks in found.items() if tasks} == {}
    assert again.get("again.example.test") == (200, "<h1>Again</h1>\n")


def test_a_php_site_s_safe_tasks_change_nothing_the_second_time(again: Hosting) -> None:
    """Its user, directories, settings group, php-fpm pool: php-fpm reloads only once."""
    platform = again.platform("again-php", flavor="php")
    site = _installed(again, "again-php.example.test", platform)
    found = {key: changed_by(again, site, f"again_{key}") for key in ("files", "settings", "vhost")}
    assert {key: tasks for key, tasks in found.items() if tasks} == {}


def test_a_second_login_link_changes_nothing(again: Hosting) -> None:
    platform = again.platform("again-drupal", flavor="drupal")
    site = _installed(again, "again-drupal.example.test", platform)
    assert run_twice(again, site, "again_login") == ([], [])
    assert "/user/reset/" in again.outputs(site, "again_login", "login")["url"]


def test_nginx_reloads_when_a_vhost_changes_and_only_then(again: Hosting) -> None:
    platform = again.platform("again-reload", page="Reloaded")
    before = reloads(again.nginx)
    site = _installed(again, "reload.example.test", platform)
    wait_for(lambda: reloads(again.nginx) == before + 1, "nginx to reload once for the new vhost")

    unchanged = again.run(site, "again_vhost")
    assert unchanged["status"] == "succeeded", "\n".join(unchanged["log"])
    assert not any(RELOAD_HANDLER in line for line in _lines(unchanged))

    disabled = again.run(site, "disable")
    assert disabled["status"] == "succeeded", "\n".join(disabled["log"])
    assert any(RELOAD_HANDLER in line for line in _lines(disabled))
    # Exactly one more: the unchanged vhost above asked for none.
    wait_for(lambda: reloads(again.nginx) == before + 2, "nginx to reload for the changed vhost")
    assert again.get("reload.example.test")[0] == 503
