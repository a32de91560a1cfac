"""The built-in catalogue run for real by the Ansible back-end, against our own nginx,
MariaDB and PostgreSQL servers: install, verify, backup, restore, clone, migrate,
disable, enable, delete, and the login action."""

from __future__ import annotations

from tests.fixtures.hosting import Hosting

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
