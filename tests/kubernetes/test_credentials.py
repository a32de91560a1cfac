"""The cluster's token: a secret task value of the cluster, encrypted at rest, never in a
run's stored values nor shown again, and handed to the tasks of every environment on it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.builtin.kubernetes.tasks import CredentialsFields
from app.catalog.registry import build_catalog
from app.config import Settings
from app.dispatch.executor_input import add_credentials, entity_data, typed_input
from app.entities.task.models import TaskInstance
from app.security.crypto import SecretBox
from tests.fixtures.factories import operation_id
from tests.kubernetes.samples import make_kubernetes_graph

# A service account token is a JWT of a kilobyte or more: longer than other secrets.
TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "x" * 1200 + ".sig"


async def _verify(client: httpx.AsyncClient, cluster: dict[str, Any], token: str) -> Any:
    response = await client.post(
        f"/api/v1/operations/{operation_id(cluster, 'verify')}/runs",
        json={"values": {"credentials": {"token": token}}},
    )
    assert response.status_code == 202, response.text
    return response.json()


async def _stored(session: AsyncSession, cluster: dict[str, Any]) -> dict[str, Any]:
    await session.rollback()
    task = await session.scalar(
        select(TaskInstance).where(
            TaskInstance.entity_id == uuid.UUID(cluster["id"]),
            TaskInstance.key == "credentials",
        )
    )
    assert task is not None
    return task.values


async def test_the_token_is_encrypted_at_rest_and_kept_out_of_the_runs_values(
    client: httpx.AsyncClient,
    dashboard: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
) -> None:
    cluster = (await make_kubernetes_graph(client))["cluster"]
    run = await _verify(client, cluster, TOKEN + "\n")  # pasted from a file
    stored = (await _stored(session, cluster))["token"]
    assert stored.startswith("enc:v1:") and TOKEN not in stored
    assert SecretBox(settings.secret_key).open(stored) == TOKEN
    shown = (await client.get(f"/api/v1/runs/{run['id']}")).json()
    assert TOKEN not in json.dumps(shown)
    assert "token" not in shown["values"].get("credentials", {})
    page = await dashboard.get(f"/clusters/{cluster['id']}")
    assert page.status_code == 200 and TOKEN not in page.text


async def test_a_run_that_leaves_the_token_out_keeps_the_saved_one(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    cluster = (await make_kubernetes_graph(client))["cluster"]
    await _verify(client, cluster, TOKEN)
    response = await client.post(
        f"/api/v1/operations/{operation_id(cluster, 'verify')}/runs", json={"values": {}}
    )
    assert response.status_code == 202, response.text
    stored = (await _stored(session, cluster))["token"]
    assert SecretBox(settings.secret_key).open(stored) == TOKEN


async def test_a_token_with_a_space_is_refused_beside_its_field(client: httpx.AsyncClient) -> None:
    cluster = (await make_kubernetes_graph(client))["cluster"]
    response = await client.post(
        f"/api/v1/operations/{operation_id(cluster, 'verify')}/runs",
        json={"values": {"credentials": {"token": "two words here"}}},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "values", "credentials", "token"]


async def test_an_environments_tasks_get_its_clusters_token_to_connect_and_to_mask(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """What a worker's claim holds: the token in clear beside the cluster, and in the
    secrets its emitter masks."""
    graph = await make_kubernetes_graph(client)
    await _verify(client, graph["cluster"], TOKEN)
    await session.rollback()
    catalog = build_catalog(plugins=False)
    plain = await entity_data(session, uuid.UUID(graph["environment"]["id"]))
    secrets = await add_credentials(session, catalog, SecretBox(settings.secret_key), [plain])
    assert secrets == (TOKEN,)
    assert plain["references"]["cluster"]["credentials"] == {"token": TOKEN}
    assert "credentials" not in plain["references"]["project"]
    # As executors receive it: typed, the secret a SecretStr.
    every = {
        key: {"type": t, "values": {}} for key, t in catalog.kinds["environment"].tasks.items()
    }
    cluster = typed_input(catalog, plain, every, "verify").entity.reference("cluster")
    assert isinstance(cluster.credentials, CredentialsFields)
    assert cluster.credentials.token is not None
    assert cluster.credentials.token.get_secret_value() == TOKEN
    assert TOKEN not in json.dumps(cluster.plain())
