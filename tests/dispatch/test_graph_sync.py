"""A plugin installed after entities exist: `aegir migrate` gives them its operations."""

from __future__ import annotations

from fastapi import FastAPI

from app.catalog.registry import build_catalog
from app.config import Settings
from app.db import session_scope
from app.dispatch.entities import sync_graphs
from app.main import create_app
from tests.fixtures.accounts import Account, api_client
from tests.fixtures.factories import make_graph


async def test_existing_sites_get_the_plugin_operation(
    settings: Settings, app: FastAPI, account: Account
) -> None:
    before_plugin: FastAPI = create_app(settings, build_catalog(plugins=False))
    async with (
        before_plugin.router.lifespan_context(before_plugin),
        api_client(before_plugin, account) as http,
    ):
        site = (await make_graph(http))["site"]
    assert "purge_cache" not in {op["type"] for op in site["operations"]}

    async with session_scope(app.state.sessionmaker) as session:
        added = await sync_graphs(session, app.state.catalog)
    assert added == 1
    async with session_scope(app.state.sessionmaker) as session:
        assert await sync_graphs(session, app.state.catalog) == 0, "idempotent"

    async with api_client(app, account) as http:
        after = (await http.get(f"/api/v1/sites/{site['id']}")).json()
        purge = next(op for op in after["operations"] if op["type"] == "purge_cache")
        run = await http.post(f"/api/v1/operations/{purge['id']}/runs", json={})
    assert run.status_code == 202, run.text
