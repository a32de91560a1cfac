"""What a run request must satisfy beyond its schema: the entity's state, the entities
its fields name, the name a copy takes; and secrets Aegir generates when left empty."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.entities.task.models import TaskInstance
from app.security.crypto import SecretBox
from tests.fixtures.factories import make_graph, make_platform, operation_id, set_state


async def _run(
    client: httpx.AsyncClient, site: dict[str, object], op: str, values: object
) -> httpx.Response:
    return await client.post(
        f"/api/v1/operations/{operation_id(site, op)}/runs", json={"values": values}
    )


async def test_delete_is_refused_until_the_site_is_disabled(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = (await make_graph(client))["site"]
    fresh = await _run(client, site, "delete", {})
    assert fresh.status_code == 409
    assert fresh.json()["detail"] == (
        "site www.example.com is not set up yet; delete needs it disabled first"
    )
    await set_state(session, site["id"], "enabled")
    enabled = await _run(client, site, "delete", {})
    assert enabled.status_code == 409
    assert "is enabled; delete needs it disabled first" in enabled.json()["detail"]
    await set_state(session, site["id"], "disabled")
    assert (await _run(client, site, "delete", {})).status_code == 202
    shown = await client.get(f"/api/v1/sites/{site['id']}")
    assert shown.json()["state"] == "disabled"


async def test_migrate_names_a_platform_of_the_same_team_that_is_not_the_current_one(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    site = graph["site"]
    await set_state(session, site["id"], "enabled")
    missing = await _run(client, site, "migrate", {"migrate": {"target_platform": "nowhere"}})
    # A platform that is not there is a 404 (like a reference), naming the field.
    assert missing.status_code == 404
    detail = missing.json()["detail"]
    assert detail.startswith("values.migrate.target_platform: ")
    assert "no platform named 'nowhere'" in detail
    # Moving it where it already is conflicts with its state: a 409, naming the field.
    same = await _run(client, site, "migrate", {"migrate": {"target_platform": "drupal-10"}})
    assert same.status_code == 409
    assert (
        same.json()["detail"]
        == "values.migrate.target_platform: the platform is already 'drupal-10'"
    )
    await make_platform(client, graph["server"], "drupal-11")
    moved = await _run(client, site, "migrate", {"migrate": {"target_platform": "drupal-11"}})
    assert moved.status_code == 202, moved.text


async def test_clone_refuses_a_domain_that_is_taken(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site = (await make_graph(client))["site"]
    await set_state(session, site["id"], "enabled")
    taken = await _run(client, site, "clone", {"clone": {"new_domain": "www.example.com"}})
    # Taken like a name on create: a 409, naming the field.
    assert taken.status_code == 409
    assert taken.json()["detail"] == (
        "values.clone.new_domain: a site named 'www.example.com' already exists"
    )


async def test_an_empty_database_password_is_generated_and_kept_encrypted(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    site = (await make_graph(client))["site"]
    assert (await _run(client, site, "install", {})).status_code == 202
    await session.rollback()
    task = await session.scalar(
        select(TaskInstance).where(
            TaskInstance.entity_id == uuid.UUID(site["id"]), TaskInstance.key == "database"
        )
    )
    assert task is not None
    box = SecretBox(settings.secret_key)
    stored = task.values["db_password"]
    assert stored.startswith("enc:v1:")
    password = box.open(stored)
    assert len(password) >= 20
    # A second install keeps the password it has rather than making a new one.
    assert (await _run(client, site, "install", {})).status_code == 202
    await session.rollback()
    await session.refresh(task)
    assert box.open(task.values["db_password"]) == password
