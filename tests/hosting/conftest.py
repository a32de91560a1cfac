"""Real nginx, MariaDB and PostgreSQL servers of our own, one of each per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fixtures.hosting import (
    PHP_NEEDS_ROOT,
    Hosting,
    MariaDBServer,
    NginxServer,
    PhpFpmServer,
    PostgresServer,
    mariadb_server,
    nginx_server,
    php_fpm_binary,
    php_fpm_server,
    site_postgres_server,
)
from tests.fixtures.services import missing, require_programs
from tests.fixtures.stack import running_stack

# What the hosting back-end's tests run besides Python, by Debian package.
PROGRAMS = {
    "nginx": ("nginx",),
    "postgresql": ("initdb", "pg_ctl", "psql"),
    "mariadb-server": ("mariadb-install-db", "mariadbd"),
    "mariadb-client": ("mysql", "mysqladmin", "mysqldump"),
    "git": ("git",),
    "openssh-server": ("sshd",),
    "openssh-client": ("ssh", "ssh-keygen"),
}


@pytest.fixture(scope="session", autouse=True)
def _hosting_programs() -> None:
    """The whole tier skips (fails under ``make test``) naming what is not installed."""
    require_programs(PROGRAMS)


@pytest.fixture(scope="session")
def nginx() -> Iterator[NginxServer]:
    with nginx_server() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    with mariadb_server() as server:
        yield server


@pytest.fixture(scope="session")
def site_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL for sites' databases, separate from Aegir's own ``postgres_url``."""
    with site_postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def php_fpm_or_why() -> Iterator[PhpFpmServer | str]:
    """The suite's php-fpm master (as root), or why PHP sites cannot be served here:
    only the tests that serve PHP skip (fail under ``make test``), not the whole tier."""
    binary = php_fpm_binary()
    if binary is None:
        yield "not installed: php-fpm (php-fpm)"
    elif os.geteuid() != 0:
        yield PHP_NEEDS_ROOT
    else:
        with php_fpm_server(binary) as server:
            yield server


@pytest.fixture
def php_fpm(php_fpm_or_why: PhpFpmServer | str) -> PhpFpmServer:
    if isinstance(php_fpm_or_why, str):
        missing(php_fpm_or_why)
    return php_fpm_or_why


@pytest.fixture(scope="session")
def hosting(
    tmp_path_factory: pytest.TempPathFactory,
    nginx: NginxServer,
    mariadb: MariaDBServer,
    site_postgres: PostgresServer,
    php_fpm_or_why: PhpFpmServer | str,
) -> Iterator[Hosting]:
    """Aegir (API, worker, relay, Redis; SQLite) with a local server entity that manages
    the test nginx, MariaDB, PostgreSQL and php-fpm, and two static platforms and a
    Drupal one."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('hosting') / 'aegir.sqlite3'}"
    with running_stack(url) as stack:
        hosting = Hosting.create(
            stack, tmp_path_factory.mktemp("web"), nginx, mariadb, site_postgres, php_fpm_or_why
        )
        yield hosting
        hosting.http.close()
