"""PHP platforms served for real: the suite's nginx passes PHP to a php-fpm pool of the
site's own (its user, its socket, open_basedir), which the suite's php-fpm master runs."""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from app.catalog.builtin.site.ansible import php_user
from tests.fixtures.hosting import Hosting, PhpFpmServer

# Each test runs up to five playbooks: more than the default 120 s on a shared machine.
pytestmark = pytest.mark.timeout(300)

# Prints the database name from the settings file Aegir wrote (the pool says where it
# is), and whether a file named in ?read= can be read from this site's PHP.
INDEX_PHP = r"""<?php
require getenv('AEGIR_SETTINGS_FILE');
echo 'database: ' . $databases['default']['default']['database'] . "\n";
if (isset($_GET['read'])) {
    $text = @file_get_contents($_GET['read']);
    echo ($text === false ? 'unreadable: ' : 'readable: ') . $_GET['read'] . "\n";
}
"""


@pytest.fixture
def php_root(php_fpm: PhpFpmServer) -> Iterator[Path]:
    """A directory every site user may traverse (pytest's own are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="aegir-php-web-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _php_platform(hosting: Hosting, root: Path, name: str) -> dict[str, Any]:
    platform_root = root / name
    (platform_root / "sites").mkdir(parents=True)
    (platform_root / "index.php").write_text(INDEX_PHP)
    for path in (platform_root, platform_root / "sites", platform_root / "index.php"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    body = {
        "name": name,
        "fields": {"root": str(platform_root), "flavor": "php"},
        "references": {"server": hosting.server["id"]},
    }
    response = hosting.http.post("/api/v1/platforms", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _installed(hosting: Hosting, domain: str, platform: dict[str, Any]) -> dict[str, Any]:
    site = hosting.site(domain, platform)
    run = hosting.run(site, "install", {"database": {"engine": "mariadb"}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return site


def _succeeds(hosting: Hosting, site: dict[str, Any], op: str) -> None:
    run = hosting.run(site, op)
    assert run["status"] == "succeeded", "\n".join(run["log"])


def _page(hosting: Hosting, domain: str, read: str | None = None) -> tuple[int, str]:
    hosting.nginx.reload()
    path = "/" if read is None else f"/index.php?read={quote(read)}"
    return hosting.nginx.get(domain, path)


def _settings(root: Path, platform: str, domain: str) -> str:
    return str(root / platform / "sites" / domain / "settings.php")


def test_each_php_site_reads_its_own_settings_and_not_another_s(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    platform = _php_platform(hosting, php_root, "php-app")
    _installed(hosting, "alpha.php.test", platform)
    _installed(hosting, "beta.php.test", platform)

    assert _page(hosting, "alpha.php.test") == (200, "database: alpha_php_test\n")
    assert _page(hosting, "beta.php.test") == (200, "database: beta_php_test\n")
    own, other = (_settings(php_root, "php-app", d) for d in ("alpha.php.test", "beta.php.test"))
    # Its own settings are readable (so "unreadable" below is about whose file it is).
    assert f"readable: {own}" in _page(hosting, "alpha.php.test", own)[1]
    assert f"unreadable: {other}" in _page(hosting, "alpha.php.test", other)[1]
    # Outside the platform root, open_basedir refuses even world-readable files.
    assert "unreadable: /etc/hostname" in _page(hosting, "alpha.php.test", "/etc/hostname")[1]
    # Neither settings file is served as a file by nginx.
    assert _page(hosting, "beta.php.test", None)[0] == 200
    assert hosting.nginx.get("beta.php.test", "/sites/beta.php.test/settings.php")[0] == 404


def test_each_php_site_runs_as_its_own_user_in_its_own_pool(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    platform = _php_platform(hosting, php_root, "php-pools")
    _installed(hosting, "gamma.php.test", platform)
    pool = (php_fpm.pool_dir / "gamma.php.test.conf").read_text()
    user = php_user("gamma.php.test")
    assert f"user = {user}" in pool
    assert f"listen = {php_fpm.socket_dir}/gamma.php.test.sock" in pool
    settings = Path(_settings(php_root, "php-pools", "gamma.php.test"))
    assert settings.stat().st_mode & 0o777 == 0o640
    assert settings.stat().st_gid == pwd.getpwnam(user).pw_gid


def test_verify_reports_the_php_version_that_answers(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    site = _installed(hosting, "delta.php.test", _php_platform(hosting, php_root, "php-verify"))
    run = hosting.run(site, "verify")
    assert run["status"] == "succeeded", "\n".join(run["log"])
    said = subprocess.run([php_fpm.binary, "-v"], capture_output=True, text=True, check=True)
    version = re.match(r"PHP (\S+)", said.stdout)
    assert version is not None
    assert hosting.outputs(site, "verify", "verify")["php_version"] == version.group(1)
    assert f"<dd>{version.group(1)}</dd>" in _site_page(hosting, site)


def _site_page(hosting: Hosting, site: dict[str, Any]) -> str:
    """The site's page, as a signed-in browser sees it."""
    hosting.stack.create_account("php-viewer", admin=True)
    with httpx.Client(base_url=hosting.stack.base_url, timeout=30) as browser:
        form = browser.get("/login").text
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        signed = browser.post(
            "/login",
            data={"username": "php-viewer", "password": "a-long-test-password", "csrf_token": csrf},
        )
        assert signed.status_code == 303, signed.text
        page = browser.get(f"/sites/{site['id']}")
        assert page.status_code == 200, page.text
        return page.text


def test_a_disabled_php_site_has_no_pool_until_enabled(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    site = _installed(hosting, "omega.php.test", _php_platform(hosting, php_root, "php-life"))
    pool = php_fpm.pool_dir / "omega.php.test.conf"
    _succeeds(hosting, site, "disable")
    assert not pool.exists()
    assert _page(hosting, "omega.php.test")[0] == 503
    _succeeds(hosting, site, "enable")
    assert pool.exists()
    assert _page(hosting, "omega.php.test") == (200, "database: omega_php_test\n")


def test_a_deleted_php_site_leaves_no_pool_and_no_user(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    site = _installed(hosting, "zeta.php.test", _php_platform(hosting, php_root, "php-gone"))
    pool = php_fpm.pool_dir / "zeta.php.test.conf"
    assert pool.exists()
    pwd.getpwnam(php_user("zeta.php.test"))  # there until the delete
    _succeeds(hosting, site, "disable")
    run = hosting.run(site, "delete")
    assert run["status"] == "succeeded", "\n".join(run["log"])
    assert not pool.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(php_user("zeta.php.test"))


def test_a_cloned_php_site_runs_as_a_user_of_its_own(
    hosting: Hosting, php_fpm: PhpFpmServer, php_root: Path
) -> None:
    site = _installed(hosting, "eta.php.test", _php_platform(hosting, php_root, "php-clone"))
    run = hosting.run(site, "clone", {"clone": {"new_domain": "eta-copy.php.test"}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    assert _page(hosting, "eta-copy.php.test") == (200, "database: eta_copy_php_test\n")
    original = _settings(php_root, "php-clone", "eta.php.test")
    assert f"unreadable: {original}" in _page(hosting, "eta-copy.php.test", original)[1]
    pool = (php_fpm.pool_dir / "eta-copy.php.test.conf").read_text()
    assert f"user = {php_user('eta-copy.php.test')}" in pool
