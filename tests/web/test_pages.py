"""Dashboard pages without a browser: who may see and do what, and forms that say why."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.team.models import Role
from app.web import entities, home, runs
from tests.fixtures.accounts import Account, csrf, make_account, signed_in
from tests.fixtures.factories import make_graph, make_platform, operation_id, set_state


async def test_every_dashboard_page_sends_strangers_to_sign_in(
    anonymous: httpx.AsyncClient,
) -> None:
    checked = 0
    for route in [*home.router.routes, *runs.router.routes, *entities.router.routes]:
        assert isinstance(route, APIRoute) and route.methods
        path = route.path.replace("{plural}", "sites").replace("{action_name}", "login")
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for method in route.methods - {"HEAD"}:
            answer = await anonymous.request(method, path, data={"name": "x"})
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].endswith("/login")
            checked += 1
    assert checked >= 14


async def test_a_viewer_sees_no_run_button_and_cannot_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    graph = await make_graph(client)
    await make_account(app, "vera", team="ops", role=Role.viewer)
    site = graph["site"]
    async with signed_in(app, "vera") as http:
        page = await http.get(f"/sites/{site['id']}")
        assert page.status_code == 200
        assert "www.example.com" in page.text
        assert "Run Install" not in page.text and ">Log in<" not in page.text
        assert "Change" not in page.text
        form = await http.get(f"/operations/{operation_id(site, 'install')}/run")
        assert form.status_code == 403
        assert "this needs operator" in form.text
        token = csrf(page.text)
        run = await http.post(
            f"/operations/{operation_id(site, 'install')}/run", data={"csrf_token": token}
        )
        assert run.status_code == 403
    runs = await client.get("/api/v1/runs")
    assert runs.json()["total"] == 0


async def test_another_teams_things_are_not_found(app: FastAPI, client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    await make_account(app, "walt", team="web", role=Role.admin)
    site = graph["site"]
    async with signed_in(app, "walt") as http:
        for path in (
            f"/sites/{site['id']}",
            f"/sites/{site['id']}/edit",
            f"/operations/{operation_id(site, 'verify')}/run",
        ):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert "Not found" in answer.text and "www.example.com" not in answer.text
        listed = await http.get("/sites")
        assert "www.example.com" not in listed.text
        assert "0 sites" in listed.text


async def test_a_form_without_its_csrf_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    async with signed_in(app, "alice") as http:
        answer = await http.post("/servers/new", data={"name": "x.example.com"})
        assert answer.status_code == 403
        assert "CSRF" in answer.text
    assert (await client.get("/api/v1/servers")).json()["total"] == 0


async def test_the_create_form_names_each_bad_field(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    async with signed_in(app, "alice") as http:
        token = csrf((await http.get("/servers/new")).text)
        data = {
            "csrf_token": token,
            "name": "not a host name",
            "fields.hostname": "web1.example.com",
            "fields.ssh_port": "70000",
        }
        answer = await http.post("/servers/new", data=data)
    assert answer.status_code == 422
    assert 'id="f-name-error"' in answer.text
    assert 'id="f-fields-ssh-port-error"' in answer.text
    assert "less than or equal to 65535" in answer.text
    assert 'value="not a host name"' in answer.text, "what was typed stays"
    assert (await client.get("/api/v1/servers")).json()["total"] == 0


async def test_a_taken_name_is_said_beside_the_name(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    graph = await make_graph(client)
    async with signed_in(app, "alice") as http:
        token = csrf((await http.get("/servers/new")).text)
        name = graph["server"]["name"]
        data = {"csrf_token": token, "name": name, "fields.hostname": name}
        answer = await http.post("/servers/new", data=data)
    assert answer.status_code == 422
    error = re.search(r'id="f-name-error">(.*?)</p>', answer.text, re.S)
    assert error and "already exists" in error.group(1)


async def test_an_entity_is_changed_and_deleted_from_its_pages(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    server = (
        await client.post(
            "/api/v1/servers", json={"name": "old.example.com", "fields": {"hostname": "a.b"}}
        )
    ).json()
    async with signed_in(app, "alice") as http:
        edit = await http.get(f"/servers/{server['id']}/edit")
        data = {
            "csrf_token": csrf(edit.text),
            "name": "new.example.com",
            "fields.hostname": "new.example.com",
            "fields.ssh_port": "2222",
            "fields.connection": "ssh",
            "fields.ssh_user": "aegir",
        }
        saved = await http.post(f"/servers/{server['id']}/edit", data=data)
        assert saved.status_code == 303
        page = await http.get(saved.headers["location"])
        assert "new.example.com" in page.text and "2222" in page.text
        token = csrf(page.text)
        wrong = await http.post(
            f"/servers/{server['id']}/delete", data={"csrf_token": token, "confirm": "nope"}
        )
        assert wrong.status_code == 422 and "type new.example.com to confirm" in wrong.text
        gone = await http.post(
            f"/servers/{server['id']}/delete",
            data={"csrf_token": token, "confirm": "new.example.com"},
        )
        assert gone.status_code == 303
    assert (await client.get(f"/api/v1/servers/{server['id']}")).status_code == 404


async def test_the_first_page_says_what_to_create_first(app: FastAPI, account: Account) -> None:
    async with signed_in(app, "alice") as http:
        home = await http.get("/")
    assert "Get started" in home.text
    assert 'href="http://aegir.test/servers/new">Create a server</a>' in home.text


async def test_an_unknown_page_is_a_page_that_says_so(app: FastAPI, account: Account) -> None:
    async with signed_in(app, "alice") as http:
        answer = await http.get("/nothing-here")
        assert answer.status_code == 404
        assert "there is no page nothing-here" in answer.text
        bad_id = await http.get("/sites/not-a-uuid")
        assert bad_id.status_code == 404
        assert "<html" in bad_id.text and "entity_id: Input should be a valid UUID" in bad_id.text


async def test_a_site_page_says_what_each_operation_needs_and_offers_platforms(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    await make_platform(client, graph["server"], "drupal-11")
    site = graph["site"]
    async with signed_in(app, "alice") as http:
        page = (await http.get(f"/sites/{site['id']}")).text
        assert "<dt>State</dt><dd>not set up yet</dd>" in page
        assert "Run Install" in page
        # A fresh site cannot be verified, logged in to or deleted: the page says why.
        assert "Install the site first" in page
        assert "The site is not set up yet; this needs it disabled" in page
        await set_state(session, site["id"], "enabled")
        page = (await http.get(f"/sites/{site['id']}")).text
        assert "Disable the site first" in page  # delete and enable
        assert "Install the site first" not in page
        assert "Run Disable" in page
        form = await http.get(f"/operations/{operation_id(site, 'migrate')}/run")
        options = re.findall(r'<option value="([^"]*)"', form.text)
        assert {"drupal-10", "drupal-11"} <= set(options)
