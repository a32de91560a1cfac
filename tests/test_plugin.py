"""A plugin package adds kinds and operations through entry points, with no migration."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.fixtures.factories import make_graph, make_server, operation_id
from tests.fixtures.stack import Stack, running_stack


async def test_plugin_types_appear_in_the_catalog(client: httpx.AsyncClient) -> None:
    catalog = (await client.get("/api/v1/catalog")).json()
    assert "example" in catalog["plugins"]
    kinds = {kind["name"]: kind for kind in catalog["entity_kinds"]}
    site_ops = {op["name"]: op for op in kinds["site"]["operations"]}
    assert site_ops["purge_cache"]["values_schema"]["properties"].keys() == {"purge"}
    assert kinds["cache_server"]["plural"] == "cache-servers"
    assert "cache_purge" in {task["name"] for task in catalog["tasks"]}


async def test_a_plugin_operation_accepts_a_run_request(client: httpx.AsyncClient) -> None:
    site = (await make_graph(client))["site"]
    purge = operation_id(site, "purge_cache")
    url = f"/api/v1/operations/{purge}/runs"
    accepted = await client.post(url, json={"values": {"purge": {"paths": ["node/1"]}}})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["values"] == {"purge": {"paths": ["node/1"]}}
    refused = await client.post(url, json={"values": {"purge": {"paths": ["../etc"]}}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "values", "purge", "paths", 0]


async def test_a_plugin_entity_kind_is_stored_without_a_migration(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    server = await make_server(client)
    body = {"name": "varnish1.example.com", "references": {"server": server["id"]}}
    created = await client.post("/api/v1/cache-servers", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["fields"] == {"listen_port": 6081}
    assert [op["type"] for op in created.json()["operations"]] == ["verify"]
    # The schema at head already holds it: Alembic finds nothing to add.
    report = await asyncio.to_thread(_alembic_check, settings.database_url)
    assert "No new upgrade operations detected" in report


def _alembic_check(database_url: str) -> str:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "AEGIR_DATABASE_URL": database_url}
    check = subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "check"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    return check.stdout + check.stderr


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system, its worker running Ansible with the plugin installed beside it."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('plugin') / 'aegir.sqlite3'}"
    with running_stack(url) as system:
        yield system


def _created(http: httpx.Client, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"/api/v1/{plural}", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _local_server(http: httpx.Client, name: str) -> dict[str, Any]:
    fields = {"hostname": "localhost", "connection": "local"}
    return _created(http, "servers", {"name": name, "fields": fields})


def _run(stack: Stack, http: httpx.Client, entity: dict[str, Any], op: str,
         values: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Run ``op`` to its end; its outputs by task key, once it succeeded."""
    run = stack.trigger(http, entity, op, values)
    ended = stack.wait_status(http, run["id"], {"succeeded", "failed", "lost", "cancelled"}, 120)
    log = "\n".join(line["line"] for line in stack.full_log(http, run["id"]))
    assert ended["status"] == "succeeded", log
    operation = http.get(f"/api/v1/operations/{run['operation_id']}").json()
    return {task["key"]: task["outputs"] for task in operation["tasks"]}


@pytest.mark.hosting
def test_the_plugin_purges_a_site_s_cache_with_its_own_role(stack: Stack, tmp_path: Path) -> None:
    with stack.client() as http:
        _purge(stack, http, tmp_path)


def _purge(stack: Stack, http: httpx.Client, tmp_path: Path) -> None:
    server = _local_server(http, "cache-host")
    root = tmp_path / "platform"
    cache = root / "sites" / "www.purge.test" / "cache" / "node"
    cache.mkdir(parents=True)
    for page in ("1", "2"):
        (cache / page).write_text(f"cached page {page}\n")
    platform = _created(http, "platforms", {
        "name": "purge-platform", "fields": {"root": str(root), "flavor": "static"},
        "references": {"server": server["id"]},
    })  # fmt: skip
    site = _created(http, "sites", {
        "name": "www.purge.test",
        "references": {"platform": platform["id"], "db_server": server["id"]},
    })  # fmt: skip

    outputs = _run(stack, http, site, "purge_cache", {"purge": {"paths": ["node/1"]}})
    assert not (cache / "1").exists()
    assert (cache / "2").read_text() == "cached page 2\n"
    assert outputs["purge"] == {"purged": 1}

    outputs = _run(stack, http, site, "purge_cache", {"purge": {"paths": []}})
    assert list(cache.parent.iterdir()) == []
    assert outputs["purge"] == {"purged": 1}


@pytest.mark.hosting
def test_the_plugin_verifies_its_cache_server_with_its_own_role(stack: Stack) -> None:
    with stack.client() as http:
        _verify(stack, http)


def _verify(stack: Stack, http: httpx.Client) -> None:
    server = _local_server(http, "varnish-host")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        cache = _created(http, "cache-servers", {
            "name": "varnish1.example.com", "fields": {"listen_port": port},
            "references": {"server": server["id"]},
        })  # fmt: skip
        assert _run(stack, http, cache, "verify", {})["verify"] == {"answering": True}
    assert _run(stack, http, cache, "verify", {})["verify"] == {"answering": False}


def test_a_skipped_plugin_adds_nothing() -> None:
    from app.catalog.registry import build_catalog

    assert "cache_server" in build_catalog().kinds
    skipped = build_catalog(skip=("example",))
    assert "cache_server" not in skipped.kinds
    assert "example" not in skipped.plugins
