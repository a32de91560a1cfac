"""A client generated with openapi-python-client from the app's own document does a
user's whole first hour: create a server, a platform and a site, install and verify,
read each run to its end with its log, and ask for a login link. Nothing but that
client talks to the server here; a generator warning fails the test."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.fixtures.hosting import DRUSH, Hosting

BIN = Path(sys.executable).parent
PASSWORD = "a-long-db-password"
FINAL = {"succeeded", "failed", "cancelled", "lost"}


@pytest.fixture(scope="module")
def generated(hosting: Hosting, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The generated package's name, importable; the document comes from the server."""
    where = tmp_path_factory.mktemp("generated")
    document = httpx.get(
        f"{hosting.stack.base_url}/openapi.json", headers=hosting.stack.headers, timeout=30
    )
    assert document.status_code == 200, document.text
    (where / "openapi.json").write_text(document.text)
    result = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json",
         "--meta", "none", "--output-path", "aegir_generated"],
        cwd=where, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "Warning" not in said and "WARNING" not in said, said
    sys.path.insert(0, str(where))
    try:
        yield "aegir_generated"
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m.split(".")[0] == "aegir_generated"]:
            del sys.modules[name]


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def _wait(package: str, client: Any, run_id: Any) -> Any:
    runs_get = _module(package, "api.runs.runs_get")
    deadline = time.monotonic() + 180
    while True:
        run = runs_get.sync(run_id=run_id, client=client)
        if str(run.status) in FINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def _log(package: str, client: Any, run_id: Any) -> list[str]:
    runs_log = _module(package, "api.runs.runs_log")
    lines: list[str] = []
    after = 0
    while True:
        page = runs_log.sync(run_id=run_id, client=client, after=after)
        lines += [line.line for line in page.lines]
        if not page.lines:
            return lines
        after = page.next_after


@pytest.fixture
def client(hosting: Hosting, generated: str) -> Iterator[Any]:
    made = _module(generated, "client").AuthenticatedClient(
        base_url=hosting.stack.base_url, token=hosting.stack.token, raise_on_unexpected_status=True
    )
    with made:
        yield made


def test_a_generated_client_creates_runs_and_logs_in(
    hosting: Hosting, generated: str, client: Any, tmp_path: Path
) -> None:
    package = generated
    models = _module(package, "models")

    server = _module(package, "api.servers.servers_create").sync(
        client=client,
        body=models.ServerCreate.from_dict(
            {"name": "generated", "fields": dict(hosting.server["fields"])}
        ),
    )
    run = _module(package, "api.servers.servers_run_verify").sync(
        entity_id=server.id, client=client, body=models.ServerVerifyRunCreate()
    )
    ended = _wait(package, client, run.id)
    log = _log(package, client, run.id)
    assert str(ended.status) == "succeeded", "\n".join(log)
    assert any("PLAY RECAP" in line for line in log)

    root = tmp_path / "platform"
    (root / "vendor" / "bin").mkdir(parents=True)
    (root / "sites").mkdir()
    shutil.copy(DRUSH, root / "vendor" / "bin" / "drush")
    platform = _module(package, "api.platforms.platforms_create").sync(
        client=client,
        body=models.PlatformCreate.from_dict(
            {"name": "generated-drupal", "fields": {"root": str(root), "flavor": "drupal"},
             "references": {"server": str(server.id)}}
        ),
    )  # fmt: skip
    site = _module(package, "api.sites.sites_create").sync(
        client=client,
        body=models.SiteCreate.from_dict(
            {"name": "generated.example.test",
             "references": {"platform": str(platform.id), "db_server": str(server.id)}}
        ),
    )  # fmt: skip
    install = models.SiteInstallRunCreate.from_dict(
        {"values": {"database": {"engine": "mariadb", "db_password": PASSWORD},
                    "install": {"profile": "minimal"}}}
    )  # fmt: skip
    run = _module(package, "api.sites.sites_run_install").sync(
        entity_id=site.id, client=client, body=install
    )
    ended = _wait(package, client, run.id)
    assert str(ended.status) == "succeeded", "\n".join(_log(package, client, run.id))

    run = _module(package, "api.sites.sites_run_verify").sync(
        entity_id=site.id, client=client, body=models.SiteVerifyRunCreate()
    )
    ended = _wait(package, client, run.id)
    log = _log(package, client, run.id)
    assert str(ended.status) == "succeeded", "\n".join(log)
    assert [task.status for task in ended.tasks] == ["succeeded"]

    link = _module(package, "api.sites.sites_action_login").sync(entity_id=site.id, client=client)
    assert link.url.startswith("http://generated.example.test/user/reset/")


def test_the_generated_client_reads_typed_errors(
    hosting: Hosting, generated: str, client: Any
) -> None:
    package = generated
    models = _module(package, "models")
    taken = _module(package, "api.servers.servers_create").sync_detailed(
        client=client,
        body=models.ServerCreate.from_dict(
            {"name": "localhost", "fields": dict(hosting.server["fields"])}
        ),
    )
    assert taken.status_code == 409
    assert isinstance(taken.parsed, models.ErrorBody)
    assert "localhost" in taken.parsed.detail
    bad = _module(package, "api.sites.sites_run_verify").sync_detailed(
        entity_id=hosting.server["id"], client=client, body=models.SiteVerifyRunCreate()
    )
    assert bad.status_code == 404
    assert isinstance(bad.parsed, models.ErrorBody)
