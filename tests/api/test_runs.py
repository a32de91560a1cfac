"""Run requests: composed-schema validation, values saved on shared tasks, run records."""

from __future__ import annotations

import json
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.run.models import Run, RunLogLine
from app.entities.task.models import TaskInstance
from tests.fixtures.factories import make_graph, operation_id, set_state

SECRET = "s3cret-db-pa55word"


async def _site_op(
    client: httpx.AsyncClient, op_type: str, session: AsyncSession | None = None
) -> tuple[dict[str, object], str]:
    """A new site's operation; with ``session``, the site is as if installed."""
    site = (await make_graph(client))["site"]
    if session is not None:
        await set_state(session, str(site["id"]), "enabled")
    return site, operation_id(site, op_type)


async def _run_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Run)) or 0)


async def test_a_run_request_is_queued_with_its_values(client: httpx.AsyncClient) -> None:
    site, install = await _site_op(client, "install")
    body = {"values": {"install": {"profile": "minimal"}, "vhost": {"port": 8080}}}
    response = await client.post(f"/api/v1/operations/{install}/runs", json=body)
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "queued"
    assert run["entity_id"] == site["id"]
    assert run["values"]["install"] == {"profile": "minimal"}
    assert [task["task_key"] for task in run["tasks"]] == [
        "database", "files", "settings", "vhost", "install", "certificate", "install_cleanup",
    ]  # fmt: skip
    assert {task["status"] for task in run["tasks"]} == {"pending"}
    again = await client.get(f"/api/v1/runs/{run['id']}")
    assert again.json() == run


async def test_a_bad_value_names_its_task_and_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _site, install = await _site_op(client, "install")
    body = {"values": {"install": {"profile": "minimal", "admin_email": "nobody"}}}
    response = await client.post(f"/api/v1/operations/{install}/runs", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "values", "install", "admin_email"]
    assert "e-mail address" in error["msg"]  # in words, not the pattern
    assert await _run_count(session) == 0
    profile = await session.scalar(select(TaskInstance.values).where(TaskInstance.key == "install"))
    assert profile == {}, "the valid field sent beside the bad one was not saved either"


async def test_unknown_task_keys_and_fields_are_refused(client: httpx.AsyncClient) -> None:
    _site, install = await _site_op(client, "install")
    url = f"/api/v1/operations/{install}/runs"
    unknown_task = await client.post(url, json={"values": {"backup_archive": {"path": "x"}}})
    assert unknown_task.status_code == 422
    assert unknown_task.json()["detail"][0]["loc"] == ["body", "values", "backup_archive"]
    unknown_field = await client.post(url, json={"values": {"install": {"profle": "minimal"}}})
    assert unknown_field.status_code == 422
    assert unknown_field.json()["detail"][0]["loc"] == ["body", "values", "install", "profle"]
    not_an_object = await client.post(url, json={"values": {"install": "minimal"}})
    assert not_an_object.status_code == 422


async def test_a_required_field_must_be_given(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _site, clone = await _site_op(client, "clone", session)
    url = f"/api/v1/operations/{clone}/runs"
    missing = await client.post(url, json={})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "values", "clone", "new_domain"]
    ok = await client.post(url, json={"values": {"clone": {"new_domain": "copy.example.com"}}})
    assert ok.status_code == 202


async def test_values_persist_on_the_task_for_the_next_run(client: httpx.AsyncClient) -> None:
    _site, install = await _site_op(client, "install")
    url = f"/api/v1/operations/{install}/runs"
    await client.post(url, json={"values": {"install": {"profile": "minimal"}}})
    await client.post(url, json={"values": {"vhost": {"port": 8080}}})
    op = (await client.get(f"/api/v1/operations/{install}")).json()
    values = {task["key"]: task["values"] for task in op["tasks"]}
    assert values["install"]["profile"] == "minimal"
    assert values["install"]["site_name"] == "My site", "defaults are shown"
    assert values["vhost"]["port"] == 8080


async def test_secrets_are_saved_encrypted_and_never_shown(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    _site, install = await _site_op(client, "install")
    body = {"values": {"database": {"db_password": SECRET}}}
    response = await client.post(f"/api/v1/operations/{install}/runs", json=body)
    assert response.status_code == 202
    assert SECRET not in response.text
    assert "db_password" not in response.json()["values"]["database"]
    op = await client.get(f"/api/v1/operations/{install}")
    assert SECRET not in op.text
    database = next(task for task in op.json()["tasks"] if task["key"] == "database")
    assert database["values"]["db_password"] == "**********"
    runs = await client.get("/api/v1/runs")
    assert SECRET not in runs.text
    stored = await session.scalar(select(TaskInstance.values).where(TaskInstance.key == "database"))
    assert stored is not None
    assert SECRET not in json.dumps(stored), "never in clear text in the database"
    assert app.state.secret_box.open(stored["db_password"]) == SECRET, "kept for the back-end"


async def test_runs_are_listed_and_filtered(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    await set_state(session, graph["site"]["id"], "enabled")
    server_verify = operation_id(graph["server"], "verify")
    site_verify = operation_id(graph["site"], "verify")
    for op in (server_verify, site_verify, site_verify):
        assert (await client.post(f"/api/v1/operations/{op}/runs", json={})).status_code == 202
    everything = (await client.get("/api/v1/runs")).json()
    assert everything["total"] == 3
    site_runs = (await client.get("/api/v1/runs", params={"entity": graph["site"]["id"]})).json()
    assert site_runs["total"] == 2
    queued = (await client.get("/api/v1/runs", params={"status": "queued"})).json()
    assert queued["total"] == 3
    assert (await client.get("/api/v1/runs", params={"status": "succeeded"})).json()["total"] == 0
    bad = await client.get("/api/v1/runs", params={"status": "done"})
    assert bad.status_code == 422
    site = (await client.get(f"/api/v1/sites/{graph['site']['id']}")).json()
    assert site["latest_run"]["operation_type"] == "verify"
    verify = next(op for op in site["operations"] if op["type"] == "verify")
    assert verify["latest_run"]["status"] == "queued"


async def test_the_log_is_read_after_a_sequence_number(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _site, verify = await _site_op(client, "verify", session)
    run = (await client.post(f"/api/v1/operations/{verify}/runs", json={})).json()
    run_id = uuid.UUID(run["id"])
    session.add_all(
        RunLogLine(run_id=run_id, seq=seq, stream="stdout", line=f"line {seq}")
        for seq in range(1, 6)
    )
    await session.commit()
    log = (await client.get(f"/api/v1/runs/{run_id}/log", params={"after": 2})).json()
    assert [line["seq"] for line in log["lines"]] == [3, 4, 5]
    assert log["next_after"] == 5
    assert log["complete"] is False
    tail = (await client.get(f"/api/v1/runs/{run_id}/log", params={"after": 5})).json()
    assert tail["lines"] == [] and tail["next_after"] == 5
    missing = await client.get(f"/api/v1/runs/{uuid.uuid4()}/log")
    assert missing.status_code == 404


async def test_a_run_on_a_missing_operation_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/api/v1/operations/{uuid.uuid4()}/runs", json={})
    assert response.status_code == 404
