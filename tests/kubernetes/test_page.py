"""The environment's dashboard page: its release, its tier, its replicas as last observed
and its history of deploys, from what the back-end wrote back (``EntityKind.summaries``)."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.task.models import TaskInstance
from tests.kubernetes.samples import IMAGE, OLD_IMAGE, make_kubernetes_graph

RUNS = [str(uuid.uuid4()) for _ in range(3)]


def _entry(at: str, by: str, release: str, image: str, run: str) -> dict[str, Any]:
    return {"at": at, "by": by, "release": release, "image": image, "run": run}


FIRST = _entry("2026-11-01T10:00:00Z", "deploy", "acme-1", IMAGE, RUNS[0])
SECOND = _entry("2026-11-02T10:00:00Z", "deploy", "acme-2", OLD_IMAGE, RUNS[1])
THIRD = _entry("2026-11-03T10:00:00Z", "rollback", "acme-1", IMAGE, RUNS[2])

# As the worker stores them: the deploy task's outputs after two deploys, the rollback's
# after one; a verify that saw 3 replicas, then a scale (newer) that saw 5.
OUTPUTS = {
    "deploy": {"release": "acme-2", "image": OLD_IMAGE, "applied_at": SECOND["at"],
               "history": [SECOND, FIRST]},
    "rollback": {"release": "acme-1", "image": IMAGE, "applied_at": THIRD["at"],
                 "history": [THIRD, SECOND, FIRST]},
    "verify": {"ready_replicas": 3, "observed_at": "2026-11-03T09:00:00Z"},
    "scale": {"ready_replicas": 5, "observed_at": "2026-11-03T11:00:00Z"},
}  # fmt: skip


async def _store(session: AsyncSession, entity_id: str) -> None:
    tasks = await session.scalars(
        select(TaskInstance).where(TaskInstance.entity_id == uuid.UUID(entity_id))
    )
    for task in tasks:
        task.outputs = OUTPUTS.get(task.key, {})
    await session.commit()


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


async def test_the_environment_page_shows_release_tier_replicas_and_deploys(
    client: httpx.AsyncClient, dashboard: httpx.AsyncClient, session: AsyncSession
) -> None:
    environment = (await make_kubernetes_graph(client))["environment"]
    await _store(session, environment["id"])
    page = await dashboard.get(f"/environments/{environment['id']}")
    assert page.status_code == 200, page.text
    text = _text(page.text)
    assert "Tier production" in text
    assert "Release: acme-1" in text  # the reference
    assert "Ready replicas (last observed) 5" in text  # the scale, newer than the verify
    assert f"Release applied acme-1 Image applied {IMAGE}" in text  # the rollback, newest
    rows = re.findall(r"<tr><td>(.*?)</tr>", page.text, re.S)
    deploys = [_text(row).split() for row in rows if "/runs/" in row]
    assert [(d[2], d[3]) for d in deploys] == [
        ("rollback", "acme-1"), ("deploy", "acme-2"), ("deploy", "acme-1")
    ]  # fmt: skip
    for run in RUNS:
        assert re.search(rf'href="[^"]*/runs/{run}"', page.text)


async def test_a_new_environment_says_nothing_is_observed_yet(
    client: httpx.AsyncClient, dashboard: httpx.AsyncClient
) -> None:
    environment = (await make_kubernetes_graph(client))["environment"]
    text = _text((await dashboard.get(f"/environments/{environment['id']}")).text)
    assert "Ready replicas (last observed) not yet" in text
    assert "Deploys not yet" in text


async def test_other_kinds_pages_have_no_summaries(
    client: httpx.AsyncClient, dashboard: httpx.AsyncClient
) -> None:
    cluster = (await make_kubernetes_graph(client))["cluster"]
    page = await dashboard.get(f"/clusters/{cluster['id']}")
    assert page.status_code == 200 and "As last observed" not in page.text
