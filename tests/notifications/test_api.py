"""Notification targets over the API: scoped by team and role, secrets never shown, and
"send test" delivering a signed request to a real receiver, recorded in the log."""

from __future__ import annotations

import uuid

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.notification.models import NotificationTarget
from app.entities.team.models import Role
from tests.fixtures.accounts import Account, api_client, make_account
from tests.notifications.receivers import verify, webhook_receiver

SECRET = "a-webhook-secret-of-some-length"
BASE = "/api/v1/notification-targets"


def _webhook(team_id: uuid.UUID | None, url: str = "http://127.0.0.1:9/hook") -> dict[str, object]:
    return {"team_id": str(team_id), "name": "chat", "kind": "webhook", "url": url,
            "secret": SECRET, "statuses": ["failed", "lost"]}  # fmt: skip


async def test_the_secret_is_stored_encrypted_and_never_answered(
    client: httpx.AsyncClient, account: Account, session: AsyncSession
) -> None:
    created = await client.post(BASE, json=_webhook(account.team_id))
    assert created.status_code == 201, created.text
    target_id = created.json()["id"]
    answers = [
        created,
        await client.get(BASE),
        await client.get(f"{BASE}/{target_id}"),
        await client.patch(f"{BASE}/{target_id}", json={"secret": SECRET + "-new"}),
    ]
    for answer in answers:
        assert answer.status_code == 200 or answer.status_code == 201
        assert SECRET not in answer.text
    assert answers[-1].json()["has_secret"] is True
    stored = await session.scalar(
        select(NotificationTarget.secret).where(NotificationTarget.id == uuid.UUID(target_id))
    )
    assert stored is not None and stored.startswith("enc:v1:")
    assert SECRET not in stored


async def test_another_teams_operator_gets_404(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    target_id = (await client.post(BASE, json=_webhook(account.team_id))).json()["id"]
    other = await make_account(app, "mallory", team="elsewhere", role=Role.operator)
    async with api_client(app, other) as http:
        assert (await http.get(BASE)).json()["total"] == 0
        assert (await http.get(BASE, params={"team": str(account.team_id)})).json()["items"] == []
        for method, path in [
            ("GET", f"{BASE}/{target_id}"),
            ("PATCH", f"{BASE}/{target_id}"),
            ("DELETE", f"{BASE}/{target_id}"),
            ("POST", f"{BASE}/{target_id}/test"),
            ("GET", f"{BASE}/{target_id}/deliveries"),
        ]:
            body = {"enabled": False} if method == "PATCH" else None
            answer = await http.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
    assert (await client.get(f"{BASE}/{target_id}")).json()["enabled"] is True


async def test_only_the_teams_admins_manage_targets(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    target_id = (await client.post(BASE, json=_webhook(account.team_id))).json()["id"]
    operator = await make_account(app, "olga", team="ops", role=Role.operator)
    async with api_client(app, operator) as http:
        refused = await http.post(BASE, json=_webhook(account.team_id))
        # As for entities: a team one does not administer is not one to add to (404).
        assert refused.status_code == 404
        assert refused.json()["detail"].startswith("team_id: no team ")
        assert (await http.delete(f"{BASE}/{target_id}")).status_code == 403
        assert (await http.get(f"{BASE}/{target_id}")).status_code == 200
    assert (await client.delete(f"{BASE}/{target_id}")).status_code == 204
    assert (await client.get(f"{BASE}/{target_id}")).status_code == 404


async def test_a_webhook_needs_a_url_and_a_secret(
    client: httpx.AsyncClient, account: Account
) -> None:
    body = {"team_id": str(account.team_id), "name": "x", "kind": "webhook", "url": None}
    assert (await client.post(BASE, json=body)).status_code == 422
    wrong = {**_webhook(account.team_id), "statuses": ["running"]}
    answer = await client.post(BASE, json=wrong)
    assert answer.status_code == 422
    assert "not a status a run ends with" in answer.text


async def test_send_test_delivers_a_signed_body_and_logs_it(
    client: httpx.AsyncClient, account: Account
) -> None:
    with webhook_receiver() as receiver:
        created = await client.post(BASE, json=_webhook(account.team_id, receiver.url))
        target_id = created.json()["id"]
        sent = await client.post(f"{BASE}/{target_id}/test")
        receiver.code = 500
        failed = await client.post(f"{BASE}/{target_id}/test")
    assert sent.status_code == 200, sent.text
    assert sent.json()["state"] == "delivered"
    assert sent.json()["tries"][0]["code"] == 204
    assert failed.json()["state"] == "failed"
    assert failed.json()["tries"][0]["code"] == 500
    first = receiver.received[0]
    assert first.headers["X-Aegir-Event"] == "test"
    assert first.headers["X-Aegir-Delivery"] == sent.json()["id"]
    assert verify(SECRET, first.headers, first.body)
    assert not verify(SECRET + "x", first.headers, first.body)
    assert orjson.loads(first.body)["target"]["name"] == "chat"
    log = (await client.get(f"{BASE}/{target_id}/deliveries")).json()
    assert [d["state"] for d in log["items"]] == ["failed", "delivered"]


async def test_a_change_sent_as_null_leaves_the_field_as_it_is(
    client: httpx.AsyncClient, account: Account
) -> None:
    target_id = (await client.post(BASE, json=_webhook(account.team_id))).json()["id"]
    nulls = {"name": None, "url": None, "secret": None, "statuses": None, "enabled": None}
    changed = await client.patch(f"{BASE}/{target_id}", json=nulls)
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "chat" and changed.json()["has_secret"] is True
    assert changed.json()["statuses"] == ["failed", "lost"]
    too_long = {"url": "http://example.com/" + "a" * 2000}
    assert (await client.patch(f"{BASE}/{target_id}", json=too_long)).status_code == 422
