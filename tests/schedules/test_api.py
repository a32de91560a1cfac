"""Schedules through the API: validation (cron, zone, values), secrets, team scoping."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.schedule.models import Schedule
from app.entities.team.models import Role
from tests.fixtures.accounts import api_client, make_account
from tests.fixtures.factories import make_graph, operation_id

SECRET = "an-admin-pa55word"


async def _site(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await make_graph(client))["site"]


def _body(site: dict[str, Any], op: str = "backup", **over: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "operation_id": operation_id(site, op),
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        **over,
    }


async def test_a_schedule_shows_its_preview_and_next_fire_times(
    client: httpx.AsyncClient,
) -> None:
    site = await _site(client)
    body = _body(site, values={"backup_archive": {"description": "nightly"}}, keep_last=3)
    response = await client.post("/api/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    schedule = response.json()
    assert schedule["preview"].startswith("At 02:00 every day (Europe/Paris), next: ")
    assert len(schedule["next"]) == 5
    # 02:00 in Paris is 01:00 or 00:00 UTC (winter, summer time).
    assert {at[11:16] for at in schedule["next"]} <= {"01:00", "00:00"}
    assert schedule["values"] == {"backup_archive": {"description": "nightly"}}
    assert schedule["entity_id"] == site["id"] and schedule["keep_last"] == 3
    shown = await client.get(f"/api/v1/schedules/{schedule['id']}")
    assert shown.json()["id"] == schedule["id"]


async def test_a_bad_cron_expression_or_zone_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    site = await _site(client)
    bad_cron = await client.post("/api/v1/schedules", json=_body(site, cron="61 * * * *"))
    assert bad_cron.status_code == 422
    assert bad_cron.json()["detail"][0]["loc"] == ["body", "cron"]
    bad_zone = await client.post("/api/v1/schedules", json=_body(site, timezone="Mars/Olympus"))
    assert bad_zone.status_code == 422
    assert bad_zone.json()["detail"][0]["loc"] == ["body", "timezone"]
    preview = await client.get("/api/v1/cron-preview", params={"cron": "* * *"})
    assert preview.status_code == 422 and preview.json()["detail"][0]["loc"] == ["query", "cron"]


async def test_values_are_checked_against_the_operation(client: httpx.AsyncClient) -> None:
    site = await _site(client)
    # The install task's values belong to another operation than backup.
    other = _body(site, values={"install": {"profile": "minimal"}})
    response = await client.post("/api/v1/schedules", json=other)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:3] == ["body", "values", "install"]
    bad = _body(site, "install", values={"install": {"admin_email": "nobody"}})
    response = await client.post("/api/v1/schedules", json=bad)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "values", "install", "admin_email"]


async def test_retention_only_on_an_operation_that_writes_an_archive(
    client: httpx.AsyncClient,
) -> None:
    site = await _site(client)
    response = await client.post("/api/v1/schedules", json=_body(site, "verify", keep_last=3))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "keep_last"]


async def test_a_secret_value_is_sealed_at_rest_and_never_shown(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = await _site(client)
    values = {"install": {"admin_password": SECRET, "profile": "minimal"}}
    response = await client.post("/api/v1/schedules", json=_body(site, "install", values=values))
    assert response.status_code == 201, response.text
    assert response.json()["values"] == {"install": {"profile": "minimal"}}
    stored = (await session.scalars(select(Schedule))).one()
    assert SECRET not in str(stored.values)
    assert stored.values["install"]["admin_password"]  # sealed, not dropped


async def test_pause_resume_change_and_delete(client: httpx.AsyncClient) -> None:
    site = await _site(client)
    schedule = (await client.post("/api/v1/schedules", json=_body(site))).json()
    url = f"/api/v1/schedules/{schedule['id']}"
    assert (await client.post(f"{url}/pause")).json()["paused"] is True
    assert (await client.post(f"{url}/resume")).json()["paused"] is False
    changed = await client.patch(url, json={"cron": "30 3 * * 1", "timezone": "UTC"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["preview"].startswith("At 03:30 on Monday (UTC)")
    bad = await client.patch(url, json={"cron": "every day"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "cron"]
    assert (await client.get(f"{url}/slots")).json()["total"] == 0
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404


async def test_another_team_sees_nothing_and_a_viewer_cannot_create(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    site = await _site(client)
    schedule = (await client.post("/api/v1/schedules", json=_body(site))).json()
    url = f"/api/v1/schedules/{schedule['id']}"
    stranger = await make_account(app, "mallory", team="other", role=Role.operator)
    async with api_client(app, stranger) as other:
        for method, path in (("GET", url), ("GET", f"{url}/slots"), ("PATCH", url),
                             ("POST", f"{url}/pause"), ("DELETE", url)):  # fmt: skip
            response = await other.request(method, path, json={} if method == "PATCH" else None)
            assert response.status_code == 404, (method, path, response.text)
        assert (await other.get("/api/v1/schedules")).json()["total"] == 0
        created = await other.post("/api/v1/schedules", json=_body(site, name="theirs"))
        assert created.status_code == 404
    viewer = await make_account(app, "victor", team="ops", role=Role.viewer)
    async with api_client(app, viewer) as watching:
        assert (await watching.get(url)).status_code == 200
        listed = await watching.get("/api/v1/schedules", params={"team": schedule["team_id"]})
        assert listed.json()["total"] == 1
        assert (await watching.post("/api/v1/schedules", json=_body(site))).status_code == 403
        assert (await watching.post(f"{url}/pause")).status_code == 403
