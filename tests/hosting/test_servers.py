"""The hosting fixtures start real servers that behave like production ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.hosting import MariaDBServer, NginxServer, PostgresServer


def test_nginx_serves_a_vhost_after_reload(nginx: NginxServer, tmp_path: Path) -> None:
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("hello from site-a\n")
    vhost = nginx.sites_dir / "site-a.conf"
    vhost.write_text(
        "server {\n"
        f"    listen 127.0.0.1:{nginx.port};\n"
        "    server_name site-a.test;\n"
        f"    root {docroot};\n"
        "}\n"
    )
    try:
        assert nginx.get("site-a.test")[0] == 404  # not live before the reload
        nginx.reload()
        assert nginx.get("site-a.test") == (200, "hello from site-a\n")
        assert nginx.get("unknown.test")[0] == 404
    finally:
        vhost.unlink()
        nginx.reload()
    assert nginx.get("site-a.test")[0] == 404


def test_nginx_reload_reports_a_broken_config(nginx: NginxServer) -> None:
    broken = nginx.sites_dir / "broken.conf"
    broken.write_text("server { this_is_not_a_directive; }\n")
    try:
        with pytest.raises(RuntimeError, match="this_is_not_a_directive"):
            nginx.reload()
    finally:
        broken.unlink()
    nginx.reload()


def test_mariadb_checks_passwords(mariadb: MariaDBServer) -> None:
    mariadb.sql(
        "CREATE DATABASE site_a;"
        " CREATE USER 'site_a'@'localhost' IDENTIFIED BY 's3cr\"et''pw';"
        " GRANT ALL ON site_a.* TO 'site_a'@'localhost';"
    )
    try:
        out = mariadb.sql(
            "SELECT CURRENT_USER(), DATABASE();",
            user="site_a",
            password="s3cr\"et'pw",
            database="site_a",
        )
        assert out.split() == ["site_a@localhost", "site_a"]
        with pytest.raises(RuntimeError, match="Access denied"):
            mariadb.sql("SELECT 1;", user="site_a", password="wrong")
        with pytest.raises(RuntimeError, match="Access denied"):
            mariadb.sql("SELECT 1;", user="site_a")
    finally:
        mariadb.sql("DROP USER 'site_a'@'localhost'; DROP DATABASE site_a;")


def test_site_postgres_checks_passwords(site_postgres: PostgresServer) -> None:
    site_postgres.sql("CREATE ROLE site_a LOGIN PASSWORD 's3cr\"et''pw';")
    site_postgres.sql("CREATE DATABASE site_a OWNER site_a;")
    try:
        out = site_postgres.sql(
            "SELECT current_user, current_database();",
            user="site_a",
            password="s3cr\"et'pw",
            database="site_a",
        )
        assert out.strip() == "site_a|site_a"
        with pytest.raises(RuntimeError, match="password authentication failed"):
            site_postgres.sql("SELECT 1;", user="site_a", password="wrong", database="site_a")
        with pytest.raises(RuntimeError, match="no password supplied"):
            site_postgres.sql("SELECT 1;", user="site_a", database="site_a")
    finally:
        site_postgres.sql("DROP DATABASE site_a;")
        site_postgres.sql("DROP ROLE site_a;")
