"""The built-in catalogue run for real by the Ansible back-end, against our own nginx,
MariaDB and PostgreSQL servers: install, verify, backup, restore, clone, migrate,
disable, enable, delete, and the login action."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hosting import Hosting, sshd_server
from tests.fixtures.services import free_port
from tests.fixtures.stack import wait_for

PASSWORD = "site-db-pass'word\"1"


def test_server_verify_finds_nginx_and_both_database_servers(hosting: Hosting) -> None:
    run = hosting.run(hosting.server, "verify")
    assert run["status"] == "succeeded", "\n".join(run["log"])
    found = hosting.outputs(hosting.server, "verify", "verify")
    assert found["reachable"] is True
    assert found["web_server"] == "nginx"
    assert found["web_server_version"].startswith("1.")
    assert found["postgresql_version"].split(".")[0].isdigit()
    assert "MariaDB" in found["mariadb_version"]
    assert any("TASK [server_verify : Is nginx there?]" in line for line in run["log"])


def test_install_a_static_site_on_mariadb(hosting: Hosting) -> None:
    platform = hosting.platform("static-one", page="App one")
    site = hosting.site("one.example.test", platform, aliases=["alias-one.example.test"])
    run = hosting.run(site, "install", {"database": {"engine": "mariadb", "db_password": PASSWORD}})
    log = "\n".join(run["log"])
    assert run["status"] == "succeeded", log
    assert hosting.get("one.example.test") == (200, "<h1>App one</h1>\n")
    assert hosting.get("alias-one.example.test")[0] == 200
    assert hosting.get("other.example.test")[0] == 404
    # The site's own user logs in to its database with its password, and only with it.
    db = "one_example_test"
    assert hosting.mariadb.sql("SELECT DATABASE()", user=db, password=PASSWORD, database=db) == (
        f"{db}\n"
    )
    assert PASSWORD not in log
    assert hosting.entity("sites", site["id"])["state"] == "enabled"


def _installed(
    hosting: Hosting, domain: str, platform: dict[str, Any], engine: str
) -> dict[str, Any]:
    site = hosting.site(domain, platform)
    run = hosting.run(site, "install", {"database": {"engine": engine, "db_password": PASSWORD}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return hosting.entity("sites", site["id"])


def _count_rows(hosting: Hosting, engine: str, db: str, statement: str) -> str:
    if engine == "postgresql":
        return hosting.postgres.sql(statement, user=db, password=PASSWORD, database=db).strip()
    return hosting.mariadb.sql(statement, user=db, password=PASSWORD, database=db).strip()


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_backup_then_restore_undoes_a_change(hosting: Hosting, engine: str) -> None:
    platform = hosting.platform(f"static-backup-{engine}", page="Backed up")
    domain = f"backup-{engine}.example.test"
    site = _installed(hosting, domain, platform, engine)
    db = domain.replace(".", "_").replace("-", "_")
    _count_rows(hosting, engine, db, "CREATE TABLE notes (body VARCHAR(50))")
    _count_rows(hosting, engine, db, "INSERT INTO notes VALUES ('before')")
    files = Path(platform["fields"]["root"]) / "sites" / domain / "files"
    (files / "upload.txt").write_text("kept\n")

    backup = hosting.run(site, "backup", {"backup_archive": {"description": "before a change"}})
    assert backup["status"] == "succeeded", "\n".join(backup["log"])
    path = hosting.outputs(site, "backup", "backup_archive")["path"]
    archive = hosting.web / "backups" / path
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        dump = tar.extractfile("database.sql")
        assert dump is not None and b"before" in dump.read()
        why = tar.extractfile("backup.txt")  # the backup's description is kept with it
        assert why is not None and b"why: before a change" in why.read()
    assert f"sites/{domain}/files/upload.txt" in names
    assert PASSWORD not in "\n".join(backup["log"])

    _count_rows(hosting, engine, db, "UPDATE notes SET body = 'after'")
    (files / "upload.txt").unlink()
    restore = hosting.run(site, "restore")
    assert restore["status"] == "succeeded", "\n".join(restore["log"])
    assert _count_rows(hosting, engine, db, "SELECT body FROM notes") == "before"
    assert (files / "upload.txt").read_text() == "kept\n"
    # The restore took a backup of the state it replaced first.
    safety = hosting.outputs(site, "restore", "safety_backup")["path"]
    assert safety != path and (hosting.web / "backups" / safety).is_file()
    assert hosting.get(domain) == (200, "<h1>Backed up</h1>\n")


def test_clone_into_a_new_domain_then_both_answer(hosting: Hosting) -> None:
    platform = hosting.platform("static-clone", page="Cloned app")
    site = _installed(hosting, "original.example.test", platform, "mariadb")
    _count_rows(hosting, "mariadb", "original_example_test", "CREATE TABLE t (v INT)")
    _count_rows(hosting, "mariadb", "original_example_test", "INSERT INTO t VALUES (7)")

    run = hosting.run(site, "clone", {"clone": {"new_domain": "copy.example.test"}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    assert hosting.get("original.example.test")[0] == 200
    assert hosting.get("copy.example.test") == (200, "<h1>Cloned app</h1>\n")
    copies = hosting.http.get("/api/v1/sites", params={"limit": 100}).json()["items"]
    copy = next(s for s in copies if s["name"] == "copy.example.test")
    assert copy["state"] == "enabled"
    assert copy["references"]["platform"]["id"] == platform["id"]
    # The copy has a database of its own, with the original's data.
    assert hosting.mariadb.sql("SELECT v FROM copy_example_test.t").strip() == "7"
    # A second clone to a taken domain is refused before anything runs.
    again = hosting.request(site, "clone", {"clone": {"new_domain": "copy.example.test"}})
    assert again.status_code == 409
    assert again.json()["detail"].startswith("values.clone.new_domain: a site named")


def test_migrate_moves_the_site_and_a_failed_migrate_rolls_back(hosting: Hosting) -> None:
    old = hosting.platform("static-old", page="Old platform")
    new = hosting.platform("static-new", page="New platform")
    broken = hosting.platform("static-broken", page=None)  # nothing to serve: 404
    site = _installed(hosting, "moving.example.test", old, "postgresql")
    assert hosting.get("moving.example.test") == (200, "<h1>Old platform</h1>\n")

    failed = hosting.run(site, "migrate", {"migrate": {"target_platform": "static-broken"}})
    log = "\n".join(failed["log"])
    assert failed["status"] == "failed", log
    assert "rolled back" in log
    assert hosting.get("moving.example.test") == (200, "<h1>Old platform</h1>\n")
    assert hosting.entity("sites", site["id"])["references"]["platform"]["id"] == old["id"]
    assert not (Path(broken["fields"]["root"]) / "sites" / "moving.example.test").exists()

    moved = hosting.run(site, "migrate", {"migrate": {"target_platform": "static-new"}})
    assert moved["status"] == "succeeded", "\n".join(moved["log"])
    assert hosting.get("moving.example.test") == (200, "<h1>New platform</h1>\n")
    assert hosting.entity("sites", site["id"])["references"]["platform"]["id"] == new["id"]
    assert (Path(new["fields"]["root"]) / "sites" / "moving.example.test").is_dir()
    assert not (Path(old["fields"]["root"]) / "sites" / "moving.example.test").exists()
    # The migrate took a backup first.
    assert hosting.outputs(site, "migrate", "backup_archive")["path"]


def test_delete_needs_a_disabled_site_and_keeps_a_backup(hosting: Hosting) -> None:
    platform = hosting.platform("static-delete", page="Doomed")
    site = _installed(hosting, "doomed.example.test", platform, "mariadb")
    refused = hosting.request(site, "delete", {})
    assert refused.status_code == 409
    assert "disable" in refused.json()["detail"]

    disabled = hosting.run(site, "disable")
    assert disabled["status"] == "succeeded", "\n".join(disabled["log"])
    status, body = hosting.get("doomed.example.test")
    assert status == 503 and "under maintenance" in body

    deleted = hosting.run(site, "delete")
    assert deleted["status"] == "succeeded", "\n".join(deleted["log"])
    assert not (hosting.nginx.sites_dir / "doomed.example.test.conf").exists()
    assert hosting.get("doomed.example.test")[0] == 404
    assert not (Path(platform["fields"]["root"]) / "sites" / "doomed.example.test").exists()
    databases = hosting.mariadb.sql("SHOW DATABASES").split()
    assert "doomed_example_test" not in databases
    backup = hosting.outputs(site, "delete", "backup_archive")["path"]
    assert (hosting.web / "backups" / backup).is_file()
    assert hosting.entity("sites", site["id"])["state"] == "deleted"


def test_disable_then_enable_serves_the_site_again(hosting: Hosting) -> None:
    platform = hosting.platform("static-toggle", page="Toggled")
    site = _installed(hosting, "toggle.example.test", platform, "postgresql")
    assert hosting.run(site, "disable")["status"] == "succeeded"
    assert hosting.get("toggle.example.test")[0] == 503
    assert hosting.request(site, "disable", {}).status_code == 409  # already disabled
    assert hosting.run(site, "enable")["status"] == "succeeded"
    assert hosting.get("toggle.example.test") == (200, "<h1>Toggled</h1>\n")
    verify = hosting.run(site, "verify")
    assert verify["status"] == "succeeded", "\n".join(verify["log"])
    # A static site runs no PHP: no version.
    expected = {"answering": True, "http_status": 200, "php_version": None}
    assert hosting.outputs(site, "verify", "verify") == expected


def test_a_vhost_nginx_refuses_leaves_the_previous_one_in_place(hosting: Hosting) -> None:
    platform = hosting.platform("static-nginx-t", page="Still here")
    site = _installed(hosting, "steady.example.test", platform, "mariadb")
    vhost = hosting.nginx.sites_dir / "steady.example.test.conf"
    before = vhost.read_text()
    # Another file in nginx's configuration breaks it: nginx -t fails for any change.
    breaker = hosting.nginx.sites_dir / "zz-broken.conf"
    breaker.write_text("this is not nginx configuration\n")
    try:
        run = hosting.run(site, "disable")
        log = "\n".join(run["log"])
        assert run["status"] == "failed", log
        assert "nginx -t refused the new vhost" in log
        assert vhost.read_text() == before
    finally:
        breaker.unlink()
    assert hosting.get("steady.example.test") == (200, "<h1>Still here</h1>\n")
    assert hosting.entity("sites", site["id"])["state"] == "enabled"


def test_a_failing_role_fails_the_run_with_ansible_s_error(hosting: Hosting) -> None:
    platform = hosting.platform("static-gone", page="Gone")
    root = Path(platform["fields"]["root"])
    shutil.rmtree(root)
    run = hosting.run(platform, "verify")
    log = "\n".join(run["log"])
    assert run["status"] == "failed"
    assert run["exit_code"] == 2  # ansible-playbook: a host failed
    assert f"{root} does not exist on localhost" in log
    assert "fatal: [localhost]: FAILED!" in log


def test_drupal_install_and_login_run_drush(hosting: Hosting) -> None:
    platform = hosting.platform("drupal-ten", flavor="drupal")
    root = Path(platform["fields"]["root"])
    site = hosting.site("drupal.example.test", platform)
    values = {
        "database": {"engine": "mariadb", "db_password": PASSWORD},
        "install": {"profile": "minimal", "site_name": "Our site", "admin_email": "a@example.test"},
    }
    run = hosting.run(site, "install", values)
    assert run["status"] == "succeeded", "\n".join(run["log"])
    settings = (root / "sites" / "drupal.example.test" / "settings.php").read_text()
    assert "'database' => 'drupal_example_test'" in settings
    assert (root / "sites" / "drupal.example.test" / "settings.php").stat().st_mode & 0o077 == 0o040

    response = hosting.http.post(f"/api/v1/sites/{site['id']}/actions/login")
    assert response.status_code == 200, response.text
    assert response.json()["url"] == (
        "http://drupal.example.test/user/reset/1/1764150000/Zm9vYmFyLXRva2Vu/login"
    )
    calls = [json.loads(line) for line in (root / "drush-calls.jsonl").read_text().splitlines()]
    assert calls == [
        ["site:install", "minimal", f"--root={root}", "--uri=http://drupal.example.test",
         "--sites-subdir=drupal.example.test", "--site-name=Our site",
         "--account-mail=a@example.test", "--yes"],
        ["uli", f"--root={root}", "--uri=http://drupal.example.test", "--no-browser"],
    ]  # fmt: skip


def test_a_failed_install_removes_what_it_created(hosting: Hosting) -> None:
    platform = hosting.platform("drupal-failing", flavor="drupal")
    root = Path(platform["fields"]["root"])
    (root / "fail-install").touch()
    site = hosting.site("broken.example.test", platform)
    run = hosting.run(site, "install", {"database": {"engine": "postgresql"}})
    log = "\n".join(run["log"])
    assert run["status"] == "failed", log
    assert "the stand-in was told to fail" in log
    assert "undoing what this run did (database, files, settings, vhost)" in log
    assert not (hosting.nginx.sites_dir / "broken.example.test.conf").exists()
    assert not (root / "sites" / "broken.example.test").exists()
    databases = hosting.postgres.sql("SELECT datname FROM pg_database").split()
    assert "broken_example_test" not in databases
    tasks = {t["task_key"]: t["status"] for t in run["tasks"]}
    assert tasks["install"] == "failed" and tasks["install_cleanup"] == "succeeded"
    assert hosting.entity("sites", site["id"])["state"] is None


def test_playbook_lines_arrive_while_it_runs(hosting: Hosting) -> None:
    """Ansible reports a task when it starts and when it ends: the start of the slow
    drush task reaches the websocket while drush is still working (five seconds)."""
    platform = hosting.platform("drupal-slow", flavor="drupal")
    (Path(platform["fields"]["root"]) / "slow-install").touch()
    site = hosting.site("slow.example.test", platform)
    response = hosting.request(site, "install", {"database": {"engine": "mariadb"}})
    run_id = response.json()["id"]
    received: list[str] = []
    status_at_start = None
    with hosting.stack.connect(f"/ws/runs/{run_id}") as socket:
        while True:
            message = json.loads(socket.recv(timeout=60))
            if message["type"] == "log":
                received += [line["line"] for line in message["lines"]]
                started = any("with drush site:install" in line for line in received)
                if started and status_at_start is None:
                    status_at_start = hosting.stack.run(hosting.http, run_id)["status"]
                    assert not any("Performed install task" in line for line in received)
            if message["type"] == "end":
                break
    assert status_at_start == "running"
    assert any("Performed install task: step 5" in line for line in received)
    assert hosting.stack.run(hosting.http, run_id)["status"] == "succeeded"


def test_cancel_stops_the_playbook_and_undoes_the_install(hosting: Hosting) -> None:
    platform = hosting.platform("drupal-cancelled", flavor="drupal")
    root = Path(platform["fields"]["root"])
    (root / "slow-install").touch()
    site = hosting.site("cancelled.example.test", platform)
    run_id = hosting.request(site, "install", {"database": {"engine": "mariadb"}}).json()["id"]
    calls = root / "drush-calls.jsonl"
    wait_for(calls.exists, "drush to start", 90)  # four tasks before it, on a loaded machine
    response = hosting.http.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    run = hosting.stack.wait_status(hosting.http, run_id, {"cancelled"}, 60)
    log = "\n".join(line["line"] for line in hosting.stack.full_log(hosting.http, run_id))
    assert "cancelled: playbook stopped" in log
    assert "step install was cancelled; undoing what this run did" in log
    assert run["exit_code"] == 130
    # drush was killed with the playbook: it never finished its five steps.
    assert "Performed install task: step 5" not in log
    assert not _processes_mentioning(str(root))
    assert not (hosting.nginx.sites_dir / "cancelled.example.test.conf").exists()
    assert "cancelled_example_test" not in hosting.mariadb.sql("SHOW DATABASES").split()


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def test_platform_verify_deploys_a_codebase_from_git(hosting: Hosting) -> None:
    """A repository served over HTTP by the test nginx (git's "dumb" protocol)."""
    with hosting.served_git("git", "<h1>From git</h1>\n") as (url, head):
        _deploy_from_git(hosting, url, head)


def _deploy_from_git(hosting: Hosting, url: str, head: str) -> None:
    root = hosting.web / "platforms" / "from-git"
    body = {
        "name": "from-git",
        "fields": {"root": str(root), "flavor": "static"},
        "references": {"server": hosting.server["id"]},
    }
    response = hosting.http.post("/api/v1/platforms", json=body)
    assert response.status_code == 201, response.text
    platform = response.json()
    run = hosting.run(platform, "verify", {"deploy": {"source": "git", "git_url": url}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    assert (root / "index.html").read_text() == "<h1>From git</h1>\n"
    assert hosting.outputs(platform, "verify", "deploy")["commit"] == head
    assert hosting.outputs(platform, "verify", "verify")["site_count"] == 0


def test_a_server_reached_over_ssh_with_aegir_s_key(hosting: Hosting) -> None:
    """sshd of our own on 127.0.0.1: the key and known hosts are where Aegir looks by
    default (``var/ssh/``); the server entity says ``connection: ssh``."""
    with sshd_server(hosting.stack.root / "var" / "ssh") as sshd:
        fields = {
            "hostname": "127.0.0.1",
            "connection": "ssh",
            "ssh_user": sshd.user,
            "ssh_port": sshd.port,
            "python": "/usr/bin/python3",
            "nginx_conf": str(hosting.nginx.conf),
        }
        response = hosting.http.post("/api/v1/servers", json={"name": "remote", "fields": fields})
        assert response.status_code == 201, response.text
        server = response.json()
        run = hosting.run(server, "verify")
        assert run["status"] == "succeeded", "\n".join(run["log"])
        assert hosting.outputs(server, "verify", "verify")["reachable"] is True
        assert f"Accepted publickey for {sshd.user}" in sshd.log.read_text()
        # A server where nothing answers: the run fails, and says so.
        fields["ssh_port"] = free_port()
        response = hosting.http.post("/api/v1/servers", json={"name": "away", "fields": fields})
        away = response.json()
        unreachable = hosting.run(away, "verify")
        log = "\n".join(unreachable["log"])
        assert unreachable["status"] == "failed", log
        assert unreachable["exit_code"] == 4  # ansible-playbook: a host was unreachable
        assert "UNREACHABLE!" in log and "Connection refused" in log
