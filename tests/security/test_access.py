"""Nobody gets in where they don't belong: anonymous, viewers, other teams."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import WebSocketRoute

from app import web
from app.api import access, accounts, operations, pages, runs, ws
from app.api.entities import entity_router
from app.entities.team.models import Role
from app.state import app_state
from tests.fixtures.accounts import Account, api_client, make_account
from tests.fixtures.factories import make_graph, operation_id, set_state

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("POST", "/login"),
          ("GET", "/favicon.ico")}  # fmt: skip


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _http_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every HTTP route: those in the OpenAPI document and the pages kept out of it."""
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in [*pages.router.routes, *web.accounts.router.routes]:
        assert isinstance(route, APIRoute) and route.methods
        found |= {(method, route.path) for method in route.methods - {"HEAD"}}
    return found


async def test_every_route_refuses_anonymous_access(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    checked = 0
    for method, path in sorted(_http_routes(app)):
        if (method, path) in PUBLIC:
            continue
        response = await anonymous.request(method, _fill(path), json={})
        if path in {"/", "/tokens", "/tokens/{token_id}/revoke", "/audit"}:
            assert response.status_code == 303, (method, path)  # pages send you to sign in
            assert response.headers["location"].endswith("/login")
        elif path == "/logout":
            assert response.status_code == 403, "no CSRF token, no session: refused"
        else:
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked > 30
    sockets = {route.path for route in ws.router.routes if isinstance(route, WebSocketRoute)}
    assert sockets == {"/ws/runs/{run_id}", "/ws/events"}, "checked in tests/e2e/test_security.py"


async def test_public_routes_answer_anonymously(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/login")).status_code == 200


async def test_a_viewer_reads_but_cannot_run_or_change(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    graph = await make_graph(client)
    viewer = await make_account(app, "victor", team="ops", role=Role.viewer)
    async with api_client(app, viewer) as http:
        site = await http.get(f"/api/v1/sites/{graph['site']['id']}")
        assert site.status_code == 200
        run = await http.post(
            f"/api/v1/operations/{operation_id(site.json(), 'verify')}/runs", json={}
        )
        assert run.status_code == 403
        assert "this needs operator" in run.json()["detail"]
        patch = await http.patch(f"/api/v1/sites/{graph['site']['id']}", json={"fields": {}})
        assert patch.status_code == 403
        assert (await http.delete(f"/api/v1/sites/{graph['site']['id']}")).status_code == 403
        login = await http.post(f"/api/v1/sites/{graph['site']['id']}/actions/login")
        assert login.status_code == 403


async def test_an_operator_runs_but_cannot_change_entities(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    await set_state(session, graph["site"]["id"], "enabled")
    operator = await make_account(app, "olga", team="ops", role=Role.operator)
    async with api_client(app, operator) as http:
        verify = operation_id(graph["site"], "verify")
        run = await http.post(f"/api/v1/operations/{verify}/runs", json={})
        assert run.status_code == 202
        assert run.json()["requested_by"] == "olga"
        assert (await http.post(f"/api/v1/runs/{run.json()['id']}/cancel")).status_code == 202
        body = {"name": "new.example.com", "fields": {"hostname": "new.example.com"}}
        refused = await http.post("/api/v1/servers", json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "team_id"]


async def test_another_team_sees_nothing_of_ours(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    await set_state(session, graph["site"]["id"], "enabled")
    site_id = graph["site"]["id"]
    verify = operation_id(graph["site"], "verify")
    run = (await client.post(f"/api/v1/operations/{verify}/runs", json={})).json()
    stranger = await make_account(app, "bob", team="web", role=Role.admin)
    async with api_client(app, stranger) as http:
        assert (await http.get("/api/v1/sites")).json()["total"] == 0
        assert (await http.get(f"/api/v1/sites/{site_id}")).status_code == 404
        assert (await http.get(f"/api/v1/sites/{site_id}/operations")).status_code == 404
        assert (await http.get(f"/api/v1/operations/{verify}")).status_code == 404
        assert (await http.post(f"/api/v1/operations/{verify}/runs", json={})).status_code == 404
        assert (await http.get("/api/v1/runs")).json()["total"] == 0
        assert (await http.get(f"/api/v1/runs/{run['id']}")).status_code == 404
        assert (await http.get(f"/api/v1/runs/{run['id']}/log")).status_code == 404
        assert (await http.post(f"/api/v1/runs/{run['id']}/cancel")).status_code == 404
        assert (await http.delete(f"/api/v1/sites/{site_id}")).status_code == 404
        # Nor can it point its own site at our platform.
        body = {
            "name": "theirs.example.com",
            "references": {"platform": graph["platform"]["id"], "db_server": graph["server"]["id"]},
        }
        hidden = await http.post("/api/v1/sites", json=body)
        assert hidden.status_code == 422
        assert hidden.json()["detail"][0]["msg"].startswith("no platform with id")
        teams = (await http.get("/api/v1/teams")).json()
        assert [team["name"] for team in teams] == ["web"]


async def test_a_site_admin_sees_every_team(app: FastAPI, client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    root = await make_account(app, "root", team=None, is_admin=True)
    async with api_client(app, root) as http:
        found = (await http.get("/api/v1/sites")).json()
        assert [site["id"] for site in found["items"]] == [graph["site"]["id"]]
        users = (await http.get("/api/v1/users")).json()
        assert {user["username"] for user in users} == {"alice", "root"}


async def test_only_site_admins_manage_teams_and_read_the_audit(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    assert (await client.post("/api/v1/teams", json={"name": "x"})).status_code == 403
    assert (await client.get("/api/v1/audit")).status_code == 403
    body = {"username": "mallory", "password": "a-long-password!"}
    assert (await client.post("/api/v1/users", json=body)).status_code == 403
    root = await make_account(app, "root", team=None, is_admin=True)
    async with api_client(app, root) as http:
        team = (await http.post("/api/v1/teams", json={"name": "web"})).json()
        member = await http.put(
            f"/api/v1/teams/{team['id']}/members/{account.user_id}", json={"role": "viewer"}
        )
        assert member.status_code == 200
    me = (await client.get("/api/v1/me")).json()
    assert {(t["team"], t["role"]) for t in me["teams"]} == {("ops", "admin"), ("web", "viewer")}


@pytest.mark.parametrize("password", ["short", "x" * 9])
async def test_weak_passwords_are_refused(app: FastAPI, password: str) -> None:
    root = await make_account(app, "root", team=None, is_admin=True)
    async with api_client(app, root) as http:
        answer = await http.post("/api/v1/users", json={"username": "w", "password": password})
    assert answer.status_code == 422


async def test_strangers_are_refused_before_their_body_is_read(
    anonymous: httpx.AsyncClient,
) -> None:
    for body in (b"{not json", b"\xff\xfe"):
        answer = await anonymous.post(
            "/api/v1/sites", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 401
    forged = await anonymous.post(
        "/api/v1/sites",
        content=b"{not json",
        headers={"Content-Type": "application/json", "Authorization": "Bearer aegir_forged"},
    )
    assert forged.status_code == 401


async def test_a_site_admin_cannot_file_an_entity_under_a_missing_team(app: FastAPI) -> None:
    root = await make_account(app, "root", team=None, is_admin=True)
    body = {
        "name": "x.example.com",
        "fields": {"hostname": "x.example.com"},
        "team_id": str(uuid.uuid4()),
    }
    async with api_client(app, root) as http:
        answer = await http.post("/api/v1/servers", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "team_id"]


async def test_the_api_docs_load_nothing_from_a_cdn(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    script = re.search(r'src="([^"]+swagger-ui-bundle\.js)"', docs.text)
    assert script, docs.text
    served = await anonymous.get(script.group(1))
    assert served.status_code == 200, "static files are public"
    assert len(served.content) > 100_000
    schema = await client.get("/openapi.json")
    assert schema.json()["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_who_may_not_change_a_thing_is_not_told_what_is_wrong_with_their_body(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The role is checked before the body is validated: a viewer gets 403, a stranger 404."""
    graph = await make_graph(client)
    site = f"/api/v1/sites/{graph['site']['id']}"
    run = f"/api/v1/operations/{operation_id(graph['site'], 'verify')}/runs"
    bad = {"name": 5, "fields": "not an object", "values": 5}
    assert (await client.patch(site, json=bad)).status_code == 422, "their admin is told"
    viewer = await make_account(app, "victor", team="ops", role=Role.viewer)
    stranger = await make_account(app, "bob", team="web", role=Role.admin)
    for account, status in ((viewer, 403), (stranger, 404)):
        async with api_client(app, account) as http:
            assert (await http.patch(site, json=bad)).status_code == status
            assert (await http.post(run, json=bad)).status_code == status


def _ids_from_access(dependant: Dependant) -> set[str]:
    """Path parameters that an ``app.api.access`` dependency looks up (and checks)."""
    found: set[str] = set()
    for sub in dependant.dependencies:
        if getattr(sub.call, "__module__", None) == access.__name__:
            found |= {param.name for param in sub.path_params}
        found |= _ids_from_access(sub)
    return found


def test_every_route_that_names_an_entity_run_or_operation_checks_access(app: FastAPI) -> None:
    """No route reads one of these ids itself: an access type looks it up and checks the role."""
    routers = [entity_router(kind) for kind in app_state(app).catalog.kinds.values()]
    routers += [operations.router, runs.router, accounts.router, pages.router]
    routers += [web.entities.router, web.runs.router, web.home.router]
    checked = 0
    for route in [route for router in routers for route in router.routes]:
        assert isinstance(route, APIRoute)
        ids = {
            name for name in ("entity_id", "run_id", "operation_id") if f"{{{name}}}" in route.path
        }
        if not ids:
            continue
        own = {param.name for param in route.dependant.path_params}
        assert not ids & own, f"{route.path} reads {ids & own} itself"
        assert ids <= _ids_from_access(route.dependant), route.path
        checked += 1
    assert checked >= 20
