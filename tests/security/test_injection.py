"""Every string field of every task type: hostile values are refused, or kept as data."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Environment, Settings
from app.entities.task.models import TaskInstance
from app.models import Base
from tests.fixtures.factories import make_graph, make_platform, set_state

# Fields without a default, and a valid value for when another field is under test.
REQUIRED = {
    ("clone", "new_domain"): "copy.example.com",
    ("migrate", "target_platform"): "drupal-11",
}
HOSTILE = ["a; rm -rf /", "$(id)", "`id`", "../../etc/passwd", "a\nb", "a\x00b", "-rf", "x|y"]


def _string_fields(schema: dict[str, Any]) -> list[str]:
    found = []
    for name, spec in schema.get("properties", {}).items():
        kinds = [spec, *spec.get("anyOf", [])]
        if any(kind.get("type") == "string" and "enum" not in kind for kind in kinds):
            found.append(name)
    return found


async def test_every_string_field_refuses_or_keeps_hostile_values_as_data(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    graph = await make_graph(client)
    site = graph["site"]
    await make_platform(client, graph["server"], "drupal-11")
    catalog = (await client.get("/api/v1/catalog")).json()
    site_kind = next(kind for kind in catalog["entity_kinds"] if kind["name"] == "site")
    checked = 0
    for op in site_kind["operations"]:
        # The state each operation needs (delete and enable: a disabled site).
        await set_state(
            session, site["id"], op["requires_state"][0] if op["requires_state"] else None
        )
        op_id = next(o["id"] for o in site["operations"] if o["type"] == op["name"])
        for task_key, ref in op["values_schema"]["properties"].items():
            model = op["values_schema"]["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
            for field in _string_fields(model):
                for value in HOSTILE:
                    tasks = set(op["values_schema"]["properties"])
                    await _try(client, session, op_id, tasks, task_key, field, value)
                    checked += 1
    assert checked > 100


async def _try(
    client: httpx.AsyncClient,
    session: AsyncSession,
    op_id: str,
    tasks: set[str],
    task_key: str,
    field: str,
    value: str,
) -> None:
    values: dict[str, dict[str, str]] = {
        key: {name: good} for (key, name), good in REQUIRED.items() if key in tasks
    }
    values.setdefault(task_key, {})[field] = value
    body = {"values": values}
    answer = await client.post(f"/api/v1/operations/{op_id}/runs", json=body)
    if answer.status_code == 422:
        locs = [error["loc"] for error in answer.json()["detail"]]
        assert ["body", "values", task_key, field] in [loc[:4] for loc in locs], locs
        return
    assert answer.status_code == 202, (task_key, field, value, answer.text)
    # Accepted: then only as one piece of data, never with a line break or NUL.
    assert "\n" not in value and "\x00" not in value, (task_key, field)
    await session.rollback()  # end our read snapshot: see what the request committed
    stored = await session.scalar(select(TaskInstance.values).where(TaskInstance.key == task_key))
    assert stored is not None
    if field not in {"db_password", "admin_password"}:
        assert stored[field] == value


async def test_a_secret_is_nowhere_in_the_database_in_clear(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    secret = "Sup3r-secret-db-password"
    site = (await make_graph(client))["site"]
    install = next(o["id"] for o in site["operations"] if o["type"] == "install")
    body = {"values": {"database": {"db_password": secret}, "install": {"admin_password": secret}}}
    assert (await client.post(f"/api/v1/operations/{install}/runs", json=body)).status_code == 202
    for table in Base.metadata.sorted_tables:
        rows = (await session.execute(text(f"SELECT * FROM {table.name}"))).all()  # noqa: S608
        assert secret not in json.dumps([list(map(str, row)) for row in rows]), table.name
    pages = [await client.get("/"), await client.get(f"/api/v1/sites/{site['id']}")]
    assert all(secret not in page.text for page in pages)


def test_outside_development_a_real_secret_key_is_required() -> None:
    with pytest.raises(ValidationError, match="AEGIR_SECRET_KEY"):
        Settings(env=Environment.production)
    Settings(env=Environment.production, secret_key="a-real-and-long-secret-key")
