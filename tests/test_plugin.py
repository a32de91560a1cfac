"""A plugin package adds kinds and operations through entry points, with no migration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.config import Settings
from tests.fixtures.factories import make_graph, make_server, operation_id


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
