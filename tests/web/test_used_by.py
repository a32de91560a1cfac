"""Who uses an entity, on its list and its page: only what the one asking may see."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from app.db import session_scope
from app.dispatch import accounts
from app.entities.team.models import Role
from tests.fixtures.accounts import Account, api_client, make_account, signed_in
from tests.fixtures.factories import make_platform, make_server


async def test_a_user_counts_and_sees_only_the_dependents_in_their_teams(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    server = await make_server(client)
    await make_platform(client, server, "ours")
    walt = await make_account(app, "walt", team="web", role=Role.admin)
    assert account.team_id is not None
    async with session_scope(app.state.sessionmaker) as session:
        await accounts.set_member(session, "test", account.team_id, walt.user_id, Role.viewer)
    async with api_client(app, walt) as theirs:
        await make_platform(theirs, server, "theirs")  # in team web, on ops's server
        seen = (await theirs.get(f"/api/v1/servers/{server['id']}")).json()
    assert {ref["name"] for ref in seen["referenced_by"]} == {"ours", "theirs"}
    listed = (await client.get("/api/v1/servers")).json()["items"]
    assert [ref["name"] for ref in listed[0]["referenced_by"]] == ["ours"]
    async with signed_in(app, "alice") as page:
        servers = (await page.get("/servers")).text
        shown = (await page.get(f"/servers/{server['id']}")).text
    assert re.search(r"<td>1</td>\s*</tr>", servers), "the list counts only what alice sees"
    assert "ours" in shown and "theirs" not in shown
    async with signed_in(app, "walt") as page:
        servers = (await page.get("/servers")).text
    assert re.search(r"<td>2</td>\s*</tr>", servers)
