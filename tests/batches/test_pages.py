"""Batch pages without a browser: "Run on its sites" from a platform page, the form that
says what was wrong (and starts nothing), and team scoping."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.team.models import Role
from app.web import batches
from tests.fixtures.accounts import Account, csrf, make_account, signed_in
from tests.fixtures.factories import make_platform, make_server, make_site, set_state


async def test_batch_pages_send_strangers_to_sign_in(anonymous: httpx.AsyncClient) -> None:
    for route in batches.router.routes:
        assert isinstance(route, APIRoute) and route.methods
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        for method in route.methods - {"HEAD"}:
            answer = await anonymous.request(method, f"{path}?kind=site", data={"kind": "x"})
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].endswith("/login")


async def test_run_on_its_sites_from_a_platform_page(
    app: FastAPI, client: httpx.AsyncClient, account: Account, session: AsyncSession
) -> None:
    server = await make_server(client)
    old = await make_platform(client, server, "old")
    await make_platform(client, server, "new")
    for n in range(2):
        site = await make_site(client, old, server, f"p{n}.example.com")
        await set_state(session, site["id"], "enabled")
    await make_account(app, "olga", team="others", role=Role.operator)
    async with signed_in(app, account.username) as http:
        platform_page = (await http.get(f"/platforms/{old['id']}")).text
        link = re.search(r'href="([^"]*/batches/new\?kind=site&amp;role=platform[^"]*)"',
                         platform_page)  # fmt: skip
        assert link, "the platform page offers Run on its sites"
        form = await http.get(link.group(1).replace("&amp;", "&"))
        assert "whose platform is <strong>old</strong>" in form.text
        data = {"csrf_token": csrf(form.text), "kind": "site", "role": "platform",
                "target": old["id"], "operation": "migrate", "concurrency": "1"}  # fmt: skip
        refused = await http.post("/batches/new", data={**data, "values": '{"migrate": {}}'})
        assert refused.status_code == 422
        assert "body.values.migrate.target_platform" in refused.text
        assert (await client.get("/api/v1/batches")).json()["total"] == 0
        values = '{"migrate": {"target_platform": "new"}}'
        started = await http.post("/batches/new", data={**data, "values": values})
        assert started.status_code == 303, started.text
        page = await http.get(started.headers["location"])
    assert page.status_code == 200
    assert re.findall(r'data-item="([^"]+)" data-status="pending"', page.text) == [
        "p0.example.com", "p1.example.com",
    ]  # fmt: skip
    async with signed_in(app, "olga") as http:
        assert (await http.get(started.headers["location"])).status_code == 404
