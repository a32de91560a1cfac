"""The notifications pages: a team's targets, the form, "send test" answered inline, the
delivery log; another team's target is 404 and no secret is ever on a page."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.notification.models import NotificationTarget
from app.entities.team.models import Role
from app.web import notifications
from tests.fixtures.accounts import Account, csrf, make_account, signed_in
from tests.notifications.receivers import verify, webhook_receiver

SECRET = "a-secret-typed-into-the-form"


async def test_every_notifications_page_sends_strangers_to_sign_in(
    anonymous: httpx.AsyncClient,
) -> None:
    checked = 0
    for route in notifications.router.routes:
        assert isinstance(route, APIRoute) and route.methods
        path = route.path.replace("{target_id}", str(uuid.uuid4()))
        for method in route.methods - {"HEAD"}:
            answer = await anonymous.request(method, path, data={"name": "x"})
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].endswith("/login")
            checked += 1
    assert checked == 6


async def test_add_a_webhook_send_a_test_and_see_it_logged(
    app: FastAPI, account: Account, session: AsyncSession
) -> None:
    with webhook_receiver() as receiver:
        async with signed_in(app, "alice") as http:
            page = await http.get("/notifications")
            assert page.status_code == 200 and "Add a target" in page.text
            form = {
                "csrf_token": csrf(page.text), "team_id": str(account.team_id),
                "kind": "webhook", "name": "chat", "url": receiver.url, "secret": SECRET,
                "statuses": ["failed", "lost"], "entity_kinds": "site, platform",
                "operations": "", "addresses": "", "enabled": ["false", "true"],
            }  # fmt: skip
            created = await http.post("/notifications", data=form)
            assert created.status_code == 303, created.text
            shown = await http.get(created.headers["location"])
            assert "failed, lost" in shown.text and "site, platform" in shown.text
            url = created.headers["location"] + "/test"
            tested = await http.post(url, data={"csrf_token": csrf(shown.text)},
                                     headers={"HX-Request": "true"})  # fmt: skip
            assert "Test delivered: the receiver answered 204" in tested.text
            receiver.code = 410
            again = await http.post(url, data={"csrf_token": csrf(shown.text)},
                                    headers={"HX-Request": "true"})  # fmt: skip
            assert "Test failed: the receiver answered 410" in again.text
            log = await http.get(created.headers["location"])
            listed = await http.get("/notifications")
    assert verify(SECRET, receiver.received[0].headers, receiver.received[0].body)
    assert "410" in log.text and "204" in log.text and "2 deliveries" in log.text
    for text in (page.text, shown.text, tested.text, log.text, listed.text):
        assert SECRET not in text
    stored = await session.scalar(select(NotificationTarget.secret))
    assert stored is not None and stored.startswith("enc:v1:")


async def test_a_form_error_is_said_beside_the_form(app: FastAPI, account: Account) -> None:
    async with signed_in(app, "alice") as http:
        page = await http.get("/notifications")
        form = {"csrf_token": csrf(page.text), "team_id": str(account.team_id),
                "kind": "webhook", "name": "no url", "enabled": "true"}  # fmt: skip
        answer = await http.post("/notifications", data=form)
    assert answer.status_code == 422
    assert "a webhook needs a url and a secret" in answer.text


async def test_another_teams_operator_gets_404_on_the_page(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    body = {"team_id": str(account.team_id), "name": "ops-mail", "kind": "email",
            "addresses": ["ops@example.test"]}  # fmt: skip
    target_id = (await client.post("/api/v1/notification-targets", json=body)).json()["id"]
    await make_account(app, "mallory", team="elsewhere", role=Role.operator)
    async with signed_in(app, "mallory") as http:
        listed = await http.get("/notifications")
        page = await http.get(f"/notifications/{target_id}")
        token = csrf(listed.text)
        test = await http.post(f"/notifications/{target_id}/test", data={"csrf_token": token})
        delete = await http.post(f"/notifications/{target_id}/delete", data={"csrf_token": token})
    assert "ops-mail" not in listed.text
    assert page.status_code == 404 and test.status_code == 404 and delete.status_code == 404
    assert (await client.get(f"/api/v1/notification-targets/{target_id}")).status_code == 200
