"""Schedule pages without a browser: the form and its live preview, the schedule's page."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.entities.team.models import Role
from app.web import schedules
from tests.fixtures.accounts import Account, csrf, make_account, signed_in
from tests.fixtures.factories import make_graph, operation_id


async def test_schedule_a_backup_from_the_site_page(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    site = (await make_graph(client))["site"]
    backup = operation_id(site, "backup")
    async with signed_in(app, "alice") as http:
        page = await http.get(f"/sites/{site['id']}")
        assert f'/operations/{backup}/schedule" aria-label="Schedule Back up"' in page.text
        form = await http.get(f"/operations/{backup}/schedule")
        assert form.status_code == 200 and "Keep the newest N archives" in form.text
        preview = await http.get(
            "/schedules/preview", params={"cron": "0 2 * * *", "timezone": "Europe/Paris"}
        )
        assert "At 02:00 every day (Europe/Paris), next: " in preview.text
        wrong = await http.get("/schedules/preview", params={"cron": "0 25 * * *"})
        assert "bad cron expression" in wrong.text
        data = {"csrf_token": csrf(form.text), "name": "nightly", "cron": "0 25 * * *",
                "timezone": "Europe/Paris", "missed_policy": "skip", "keep_last": "3"}  # fmt: skip
        refused = await http.post(f"/operations/{backup}/schedule", data=data)
        assert refused.status_code == 422 and "Nothing was scheduled" in refused.text
        assert 'value="0 25 * * *"' in refused.text, "what was typed stays"
        assert (await client.get("/api/v1/schedules")).json()["total"] == 0
        created = await http.post(
            f"/operations/{backup}/schedule", data={**data, "cron": "0 2 * * *"}
        )
        assert created.status_code == 303, created.text
        shown = await http.get(created.headers["location"])
        assert "At 02:00 every day (Europe/Paris)" in shown.text
        assert "the newest 3" in shown.text and "is skipped" in shown.text
        listed = await http.get("/schedules", params={"entity": site["id"]})
        assert "nightly" in listed.text and "1 schedule<" in listed.text
        schedule_id = created.headers["location"].rsplit("/", 1)[1]
        paused = await http.post(
            f"/schedules/{schedule_id}/pause", data={"csrf_token": csrf(shown.text)}
        )
        assert paused.status_code == 303
    assert (await client.get(f"/api/v1/schedules/{schedule_id}")).json()["paused"] is True


async def test_schedule_pages_of_another_team_are_not_found(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    site = (await make_graph(client))["site"]
    body = {"name": "nightly", "operation_id": operation_id(site, "backup"), "cron": "0 2 * * *"}
    schedule = (await client.post("/api/v1/schedules", json=body)).json()
    await make_account(app, "walt", team="web", role=Role.admin)
    async with signed_in(app, "walt") as http:
        for path in (
            f"/schedules/{schedule['id']}",
            f"/operations/{body['operation_id']}/schedule",
        ):
            assert (await http.get(path)).status_code == 404, path
        assert "nightly" not in (await http.get("/schedules")).text
    for route in schedules.router.routes:
        assert isinstance(route, APIRoute) and route.methods
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        for method in route.methods - {"HEAD"}:
            assert (await anonymous.request(method, path)).status_code == 303, (method, path)
