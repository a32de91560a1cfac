"""Signing in, CSRF, lockout, tokens, and the audit log that records them."""

from __future__ import annotations

import asyncio
import re

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.token.models import ApiToken
from app.security.tokens import token_hash
from tests.fixtures.accounts import PASSWORD, Account, api_client, csrf, make_account

SERVER = {"name": "web9.example.com", "fields": {"hostname": "web9.example.com"}}


async def _sign_in(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = await http.get("/login")
    data = {"username": username, "password": password, "csrf_token": csrf(form.text)}
    return await http.post("/login", data=data)


async def test_a_signed_in_browser_needs_the_csrf_token_to_change_things(
    app: FastAPI, anonymous: httpx.AsyncClient, account: Account
) -> None:
    signed_in = await _sign_in(anonymous, "alice", PASSWORD)
    assert signed_in.status_code == 303
    cookie = anonymous.cookies.get("aegir_session")
    assert cookie
    set_cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert (await anonymous.get("/api/v1/servers")).status_code == 200, "reads need no token"
    refused = await anonymous.post("/api/v1/servers", json=SERVER)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    home = await anonymous.get("/")
    token = csrf(home.text)
    accepted = await anonymous.post("/api/v1/servers", json=SERVER, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 201
    wrong = await anonymous.post(
        "/api/v1/servers", json={**SERVER, "name": "x.example.com"}, headers={"X-CSRF-Token": "x"}
    )
    assert wrong.status_code == 403


async def test_the_login_form_itself_needs_its_csrf_token(
    anonymous: httpx.AsyncClient, account: Account
) -> None:
    await anonymous.get("/login")
    forged = await anonymous.post("/login", data={"username": "alice", "password": PASSWORD})
    assert forged.status_code == 403
    assert (await anonymous.get("/api/v1/me")).status_code == 401


async def test_logout_ends_the_session(anonymous: httpx.AsyncClient, account: Account) -> None:
    await _sign_in(anonymous, "alice", PASSWORD)
    token = csrf((await anonymous.get("/")).text)
    assert (await anonymous.post("/logout", data={"csrf_token": token})).status_code == 303
    assert (await anonymous.get("/api/v1/me")).status_code == 401


async def test_repeated_failures_lock_the_account_for_a_while(
    app: FastAPI, anonymous: httpx.AsyncClient, account: Account
) -> None:
    limit = app.state.settings.login_max_failures
    for _ in range(limit):
        assert (await _sign_in(anonymous, "alice", "wrong-password")).status_code == 401
    locked = await _sign_in(anonymous, "alice", PASSWORD)
    assert locked.status_code == 429, "even the right password waits out the lockout"
    assert "locked" in locked.text
    await asyncio.sleep(app.state.settings.login_lockout.total_seconds() + 0.5)
    assert (await _sign_in(anonymous, "alice", PASSWORD)).status_code == 303


async def test_revoked_and_expired_tokens_are_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account, session: AsyncSession
) -> None:
    made = await client.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 30})
    assert made.status_code == 201
    token = made.json()["token"]
    async with api_client(app, Account(account.user_id, "alice", token, None)) as http:
        assert (await http.get("/api/v1/me")).status_code == 200
        listed = (await http.get("/api/v1/tokens")).json()
        assert token not in str(listed), "shown once, at creation only"
        assert (await http.delete(f"/api/v1/tokens/{made.json()['id']}")).status_code == 204
        refused = await http.get("/api/v1/me")
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
    expired = await make_account(app, "eve", lifetime=-(app.state.settings.session_max_age))
    async with api_client(app, expired) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    stored = list(await session.scalars(select(ApiToken.token_hash)))
    assert token not in stored and token_hash(token) in stored, "only its hash is kept"


async def test_malformed_authorization_is_a_clear_401(anonymous: httpx.AsyncClient) -> None:
    for header in ("Basic YWxpY2U6eA==", "Bearer", "Bearer not-a-token"):
        answer = await anonymous.get("/api/v1/me", headers={"Authorization": header})
        assert answer.status_code == 401
        assert answer.json()["detail"]


async def test_the_audit_log_records_who_did_what(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    server = (await client.post("/api/v1/servers", json=SERVER)).json()
    verify = next(op["id"] for op in server["operations"] if op["type"] == "verify")
    run = (await client.post(f"/api/v1/operations/{verify}/runs", json={})).json()
    await client.post(f"/api/v1/runs/{run['id']}/cancel")
    await client.patch(f"/api/v1/servers/{server['id']}", json={"fields": {"ssh_port": 2222}})
    token = (await client.post("/api/v1/tokens", json={"name": "ci"})).json()
    await client.delete(f"/api/v1/tokens/{token['id']}")
    await _sign_in(anonymous, "alice", "wrong-password")
    await client.delete(f"/api/v1/servers/{server['id']}")
    root = await make_account(app, "root", team=None, is_admin=True)
    async with api_client(app, root) as http:
        log = (await http.get("/api/v1/audit", params={"limit": 200})).json()["items"]
    seen = {(event["actor"], event["action"]) for event in log}
    for expected in [
        ("alice", "entity.created"),
        ("alice", "run.requested"),
        ("alice", "run.cancelled"),
        ("alice", "entity.updated"),
        ("alice", "token.created"),
        ("alice", "token.revoked"),
        ("alice", "login.failed"),
        ("alice", "entity.deleted"),
    ]:
        assert expected in seen, expected


async def test_tokens_are_made_and_revoked_from_the_page(
    anonymous: httpx.AsyncClient, account: Account
) -> None:
    await _sign_in(anonymous, "alice", PASSWORD)
    page = await anonymous.get("/tokens")
    made = await anonymous.post(
        "/tokens", data={"name": "deploy script", "days": "7", "csrf_token": csrf(page.text)}
    )
    assert made.status_code == 201
    found = re.search(r'<code id="new-token">([^<]+)</code>', made.text)
    assert found, "the new token is shown once"
    token = found.group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await anonymous.get("/api/v1/me", headers=bearer)).status_code == 200
    again = await anonymous.get("/tokens")
    assert token not in again.text, "and never again"
    row = next(row for row in again.text.split("<tr>") if "deploy script" in row)
    revoke = re.search(r'action="([^"]+/revoke)"', row)
    assert revoke
    done = await anonymous.post(revoke.group(1), data={"csrf_token": csrf(again.text)})
    assert done.status_code == 303
    assert (await anonymous.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_the_audit_page_is_for_site_admins(
    app: FastAPI, anonymous: httpx.AsyncClient, account: Account
) -> None:
    await _sign_in(anonymous, "alice", PASSWORD)
    assert (await anonymous.get("/audit")).status_code == 403
    await make_account(app, "root", team=None, is_admin=True)
    async with api_client(app, None) as admin:
        await _sign_in(admin, "root", PASSWORD)
        page = await admin.get("/audit")
    assert page.status_code == 200
    assert "login.failed" in page.text or "login" in page.text
