"""The batch driver without workers (runs stay queued): two drivers stepping the same
batch at once never start an item twice nor more items than the limit; an item whose
entity is not in a state its operation runs in is skipped, with why. Both databases."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.run.models import Run
from relay.batches import BatchDriver
from relay.context import RelayContext
from tests.fixtures.factories import make_platform, make_server, make_site, set_state


def _driver(app: FastAPI) -> BatchDriver:
    state = app.state
    ctx = RelayContext(
        state.settings, state.catalog, state.sessionmaker, state.redis, state.secret_box, "relay"
    )
    return BatchDriver(ctx)


async def _upgrade_batch(client: httpx.AsyncClient, session: AsyncSession) -> dict[str, Any]:
    server = await make_server(client)
    old = await make_platform(client, server, "old")
    await make_platform(client, server, "new")
    sites = [await make_site(client, old, server, f"s{n}.example.com") for n in range(5)]
    for site in sites[1:]:
        await set_state(session, site["id"], "enabled")  # s0 was never installed
    answer = await client.post("/api/v1/batches", json={
        "kind": "site", "operation": "migrate", "filter": {"role": "platform", "target": old["id"]},
        "values": {"migrate": {"target_platform": "new"}}, "concurrency": 2,
    })  # fmt: skip
    assert answer.status_code == 202, answer.text
    batch: dict[str, Any] = answer.json()
    return batch


async def test_two_drivers_never_start_an_item_twice_nor_beyond_the_limit(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    batch = await _upgrade_batch(client, session)
    assert [i["entity_name"] for i in batch["items"]] == [f"s{n}.example.com" for n in range(5)]
    first, second = _driver(app), _driver(app)
    for _ in range(3):
        await asyncio.gather(first.step(), second.step())
    shown = (await client.get(f"/api/v1/batches/{batch['id']}")).json()
    statuses = [i["status"] for i in shown["items"]]
    assert statuses == ["skipped", "running", "running", "pending", "pending"]
    assert "not set up yet" in shown["items"][0]["reason"]
    run_ids = {i["run_id"] for i in shown["items"] if i["status"] == "running"}
    assert None not in run_ids and len(run_ids) == 2
    # One run per started item: no driver requested a second.
    entity_ids = [uuid.UUID(i["entity_id"]) for i in shown["items"]]
    runs = await session.scalar(
        select(func.count()).select_from(Run).where(Run.entity_id.in_(entity_ids))
    )
    assert runs == 2


async def test_a_filter_on_a_reference_the_kind_lacks_names_the_field(
    client: httpx.AsyncClient,
) -> None:
    server = await make_server(client)
    answer = await client.post("/api/v1/batches", json={
        "kind": "site", "operation": "verify",
        "filter": {"role": "cluster", "target": server["id"]},
    })  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "filter", "role"]
    assert (await client.get("/api/v1/batches")).json()["total"] == 0
