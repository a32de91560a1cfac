"""Servers, platforms and sites through the REST API, with their graphs."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.entity.models import Entity
from app.entities.operation.models import Operation, OperationTask
from app.entities.task.models import TaskInstance
from tests.fixtures.factories import (
    make_graph,
    make_platform,
    make_server,
    make_site,
    operation_id,
    set_state,
)


async def test_creating_a_site_builds_its_operations_and_tasks(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = (await make_graph(client))["site"]
    assert [op["type"] for op in site["operations"]] == [
        "install", "verify", "backup", "prune_backups", "restore", "clone", "migrate",
        "disable", "enable", "delete", "certificate", "renew_certificate", "purge_cache",
    ]  # fmt: skip
    keys = await session.scalars(
        select(TaskInstance.key).where(TaskInstance.entity_id == uuid.UUID(site["id"]))
    )
    assert "backup_archive" in set(keys)
    ops = await client.get(f"/api/v1/sites/{site['id']}/operations")
    assert ops.status_code == 200
    assert {op["type"] for op in ops.json()} == {op["type"] for op in site["operations"]}


async def test_backup_and_restore_share_one_backup_archive_row(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = (await make_graph(client))["site"]
    await set_state(session, site["id"], "enabled")
    site_id = uuid.UUID(site["id"])
    rows = await session.scalars(
        select(TaskInstance).where(
            TaskInstance.entity_id == site_id, TaskInstance.key == "backup_archive"
        )
    )
    [archive] = list(rows)
    used_by = await session.scalars(
        select(Operation.type)
        .join(OperationTask, OperationTask.operation_id == Operation.id)
        .where(OperationTask.task_id == archive.id)
    )
    assert set(used_by) == {"backup", "restore", "migrate", "delete"}

    backup = operation_id(site, "backup")
    sent = {"values": {"backup_archive": {"path": "backups/www-2026-11-26.tar.gz"}}}
    assert (await client.post(f"/api/v1/operations/{backup}/runs", json=sent)).status_code == 202
    restore = (await client.get(f"/api/v1/operations/{operation_id(site, 'restore')}")).json()
    seen = {task["key"]: task for task in restore["tasks"]}
    assert seen["backup_archive"]["id"] == str(archive.id)
    assert seen["backup_archive"]["values"]["path"] == "backups/www-2026-11-26.tar.gz"
    assert seen["backup_archive"]["runs"] is False
    assert seen["safety_backup"]["id"] != str(archive.id)


async def test_get_shows_fields_references_and_users(client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    site = (await client.get(f"/api/v1/sites/{graph['site']['id']}")).json()
    assert site["fields"] == {"aliases": [], "https": False}
    assert site["references"]["platform"]["name"] == "drupal-10"
    assert site["references"]["db_server"]["id"] == graph["server"]["id"]
    server = (await client.get(f"/api/v1/servers/{graph['server']['id']}")).json()
    assert {(ref["kind"], ref["name"]) for ref in server["referenced_by"]} == {
        ("platform", "drupal-10"),
        ("site", "www.example.com"),
    }


async def test_a_missing_entity_is_a_404(client: httpx.AsyncClient) -> None:
    server = await make_server(client)
    response = await client.get(f"/api/v1/sites/{server['id']}")
    assert response.status_code == 404
    assert "no site" in response.json()["detail"]
    assert (await client.get(f"/api/v1/servers/{uuid.uuid4()}")).status_code == 404


async def test_list_paginates_and_filters_by_name(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await make_server(client, f"web{i}.example.com")
    await make_server(client, "db1.example.com")
    page = (await client.get("/api/v1/servers", params={"limit": 2, "offset": 2})).json()
    assert page["total"] == 6
    assert [item["name"] for item in page["items"]] == ["web1.example.com", "web2.example.com"]
    found = (await client.get("/api/v1/servers", params={"name": "DB1"})).json()
    assert [item["name"] for item in found["items"]] == ["db1.example.com"]
    none = (await client.get("/api/v1/servers", params={"name": "web_"})).json()
    assert none["total"] == 0, "'_' is matched literally, not as a wildcard"


async def test_a_reference_to_a_missing_entity_is_not_found_by_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    server = await make_server(client)
    missing = str(uuid.uuid4())
    body = {"name": "a.example.com", "references": {"platform": missing, "db_server": server["id"]}}
    response = await client.post("/api/v1/sites", json=body)
    # Like an unknown id in a path: 404, whether missing or another team's; it names the
    # reference.
    assert response.status_code == 404
    assert response.json()["detail"] == f"references.platform: no platform with id {missing}"
    count = await session.scalar(
        select(func.count()).select_from(Entity).where(Entity.kind == "site")
    )
    assert count == 0, "nothing half-written"


async def test_a_reference_to_the_wrong_kind_is_refused(client: httpx.AsyncClient) -> None:
    server = await make_server(client)
    body = {
        "name": "a.example.com",
        "references": {"platform": server["id"], "db_server": server["id"]},
    }
    response = await client.post("/api/v1/sites", json=body)
    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"references.platform: no platform with id {server['id']} (it is a server)"
    )


async def test_bad_fields_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/servers", json={"name": "ok.example.com", "fields": {"hostname": "bad host;"}}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "fields", "hostname"]
    unknown = await client.post(
        "/api/v1/servers",
        json={"name": "ok.example.com", "fields": {"hostname": "ok.example.com", "colour": "red"}},
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "fields", "colour"]


async def test_a_taken_name_is_a_conflict(client: httpx.AsyncClient) -> None:
    await make_server(client, "web1.example.com")
    response = await client.post(
        "/api/v1/servers",
        json={"name": "WEB1.example.com", "fields": {"hostname": "x.example.com"}},
    )
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


async def test_patch_changes_only_what_is_sent(client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    other = await make_platform(client, graph["server"], "drupal-11")
    site_url = f"/api/v1/sites/{graph['site']['id']}"
    response = await client.patch(
        site_url, json={"fields": {"https": True}, "references": {"platform": other["id"]}}
    )
    assert response.status_code == 200, response.text
    site = response.json()
    assert site["fields"] == {"aliases": [], "https": True}
    assert site["references"]["platform"]["name"] == "drupal-11"
    assert site["name"] == "www.example.com"


async def test_patch_refuses_bad_values_and_keeps_the_old_ones(client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    url = f"/api/v1/sites/{graph['site']['id']}"
    bad = await client.patch(url, json={"name": "not a domain", "fields": {"https": False}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "name"]
    alias = await client.patch(url, json={"fields": {"aliases": ["ok.example.com", "-bad"]}})
    assert alias.json()["detail"][0]["loc"] == ["body", "fields", "aliases", 1]
    role = await client.patch(url, json={"references": {"cache": graph["server"]["id"]}})
    assert role.status_code == 422
    assert role.json()["detail"][0]["loc"] == ["body", "references", "cache"]
    assert (await client.get(url)).json()["fields"] == {"aliases": [], "https": False}


async def test_delete_is_refused_while_others_depend_on_it(client: httpx.AsyncClient) -> None:
    graph = await make_graph(client)
    server_url = f"/api/v1/servers/{graph['server']['id']}"
    refused = await client.delete(server_url)
    assert refused.status_code == 409
    assert "site www.example.com" in refused.json()["detail"]
    assert (await client.delete(f"/api/v1/sites/{graph['site']['id']}")).status_code == 204
    assert (await client.delete(f"/api/v1/platforms/{graph['platform']['id']}")).status_code == 204
    assert (await client.delete(server_url)).status_code == 204
    assert (await client.get(server_url)).status_code == 404


async def test_delete_is_refused_while_a_run_is_queued(client: httpx.AsyncClient) -> None:
    server = await make_server(client)
    verify = operation_id(server, "verify")
    assert (await client.post(f"/api/v1/operations/{verify}/runs", json={})).status_code == 202
    refused = await client.delete(f"/api/v1/servers/{server['id']}")
    assert refused.status_code == 409
    assert "queued" in refused.json()["detail"]


async def test_the_same_domain_may_be_used_by_two_kinds(client: httpx.AsyncClient) -> None:
    server = await make_server(client, "www.example.com")
    platform = await make_platform(client, server)
    await make_site(client, platform, server, "www.example.com")


async def test_concurrent_creates_of_one_name_give_one_201_and_409s(
    client: httpx.AsyncClient,
) -> None:
    body = {"name": "race.example.com", "fields": {"hostname": "race.example.com"}}
    answers = await asyncio.gather(*(client.post("/api/v1/servers", json=body) for _ in range(5)))
    assert sorted(answer.status_code for answer in answers) == [201, 409, 409, 409, 409]


async def test_a_url_is_kept_as_typed_and_reads_back(client: httpx.AsyncClient) -> None:
    """Found by the fuzzer: a URL valid as given outgrew its 2,083-character limit once
    normalised (a "/" added), was stored, and every later read of the cluster failed. It
    is now kept as typed: what was valid stays valid."""
    made = await client.post(
        "/api/v1/clusters", json={"name": "c1", "fields": {"api_url": "https://k.example.com"}}
    )
    assert made.status_code == 201, made.text
    url = ("https://" + "0" * 63 + "".join("." + "a" * 63 for _ in range(40)))[:2083]
    changed = await client.patch(
        f"/api/v1/clusters/{made.json()['id']}", json={"fields": {"api_url": url}}
    )
    assert changed.status_code == 200, changed.text
    shown = await client.get(f"/api/v1/clusters/{made.json()['id']}")
    assert shown.status_code == 200
    assert shown.json()["fields"]["api_url"] == url
    longer = await client.post(
        "/api/v1/clusters", json={"name": "c2", "fields": {"api_url": url + "a"}}
    )
    assert longer.status_code == 422
    assert longer.json()["detail"][0]["loc"] == ["body", "fields", "api_url"]
