"""What a succeeded promote or rollback changes: the environment's release is the one the
run applied, read from its task's outputs (``OnSuccess.repoint_output``)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import build_catalog
from app.dispatch.effects import apply_on_success
from app.entities.task.models import TaskInstance
from tests.fixtures.factories import operation_id, post_ok, set_state
from tests.kubernetes.samples import IMAGE, make_kubernetes_graph


async def _requested(
    client: httpx.AsyncClient, entity: dict[str, Any], op: str, values: dict[str, Any]
) -> str:
    response = await client.post(
        f"/api/v1/operations/{operation_id(entity, op)}/runs", json={"values": values}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _ran(session: AsyncSession, entity: dict[str, Any], key: str, outputs: Any) -> None:
    """What the back-end wrote back, as the worker stores it before the run's effects."""
    task = await session.scalar(
        select(TaskInstance).where(
            TaskInstance.entity_id == uuid.UUID(entity["id"]), TaskInstance.key == key
        )
    )
    assert task is not None
    task.outputs = outputs


async def _release_of(client: httpx.AsyncClient, entity: dict[str, Any]) -> str:
    found = (await client.get(f"/api/v1/environments/{entity['id']}")).json()
    return str(found["references"]["release"]["name"])


async def test_a_promote_and_a_rollback_repoint_the_release_they_applied(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_kubernetes_graph(client)
    environment = graph["environment"]
    second = await post_ok(
        client, "/api/v1/releases",
        {"name": "acme-2", "fields": {"image": IMAGE.replace("a" * 64, "c" * 64),
         "git_ref": "v2"}, "references": {"project": graph["project"]["id"]}},
    )  # fmt: skip
    await set_state(session, environment["id"], "enabled")
    catalog = build_catalog(plugins=False)

    run = await _requested(client, environment, "promote", {"promote": {"source": "acme-prod"}})
    await _ran(session, environment, "promote", {"release": second["name"]})
    await apply_on_success(session, catalog, uuid.UUID(run))
    await session.commit()
    assert await _release_of(client, environment) == "acme-2"

    run = await _requested(client, environment, "rollback", {})
    await _ran(session, environment, "rollback", {"release": "acme-1"})
    await apply_on_success(session, catalog, uuid.UUID(run))
    await session.commit()
    assert await _release_of(client, environment) == "acme-1"


async def test_a_rollback_that_applied_nothing_leaves_the_release(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    environment = (await make_kubernetes_graph(client))["environment"]
    await set_state(session, environment["id"], "enabled")
    run = await _requested(client, environment, "rollback", {})
    await apply_on_success(session, build_catalog(plugins=False), uuid.UUID(run))
    await session.commit()
    assert await _release_of(client, environment) == "acme-1"
