"""Recording a slot: once per (schedule, instant), with its run in the same transaction,
or missed saying why when the run cannot be requested; and the scheduler's pass."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope
from app.dispatch.schedules import Slot, record_slot
from app.entities.run.models import Run
from app.entities.schedule import repository as schedules
from app.entities.schedule.models import ScheduleSlot, SlotOutcome
from app.state import app_state
from relay.context import RelayContext
from relay.schedules import Scheduler
from tests.fixtures.factories import make_graph, operation_id, set_state

SLOT = datetime(2026, 11, 27, 2, tzinfo=UTC)


async def _nightly(client: httpx.AsyncClient, **over: Any) -> tuple[dict[str, Any], Any]:
    site = (await make_graph(client))["site"]
    body = {"name": "nightly", "operation_id": operation_id(site, "backup"), "cron": "0 2 * * *"}
    created = await client.post("/api/v1/schedules", json={**body, **over})
    assert created.status_code == 201, created.text
    return site, uuid.UUID(created.json()["id"])


async def _record(app: FastAPI, schedule_id: uuid.UUID, slot: Slot) -> uuid.UUID | None:
    state = app_state(app)
    async with session_scope(state.sessionmaker) as session:
        schedule = await schedules.get(session, schedule_id)
        return await record_slot(session, state.catalog, state.redis, state.secret_box,
                                 schedule, slot, "test")  # fmt: skip


async def _count(session: AsyncSession, model: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_slot_is_recorded_and_run_once(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site, schedule_id = await _nightly(client, values={"backup_archive": {"description": "n"}})
    await set_state(session, site["id"], "enabled")
    assert await _record(app, schedule_id, Slot(SLOT, SlotOutcome.fired)) is not None
    # Another scheduler with the same slot: nothing recorded, nothing run.
    assert await _record(app, schedule_id, Slot(SLOT, SlotOutcome.fired)) is None
    assert await _record(app, schedule_id, Slot(SLOT, SlotOutcome.missed, "late")) is None
    [slot] = (await client.get(f"/api/v1/schedules/{schedule_id}/slots")).json()["items"]
    assert slot["outcome"] == "fired" and slot["run_id"]
    run = (await client.get(f"/api/v1/runs/{slot['run_id']}")).json()
    assert run["requested_by"] == "schedule nightly"
    assert run["values"]["backup_archive"] == {"description": "n"}
    assert await _count(session, Run) == 1


async def test_a_slot_whose_run_is_refused_is_missed_saying_why(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _site, schedule_id = await _nightly(client)  # never installed: no backup yet
    assert await _record(app, schedule_id, Slot(SLOT, SlotOutcome.fired)) is not None
    [slot] = (await client.get(f"/api/v1/schedules/{schedule_id}/slots")).json()["items"]
    assert slot["outcome"] == "missed" and slot["run_id"] is None
    assert slot["note"].startswith("not run: ") and "enabled" in slot["note"]
    assert await _count(session, Run) == 0 and await _count(session, ScheduleSlot) == 1


async def test_a_pass_records_the_due_slot_and_nothing_twice(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    site, schedule_id = await _nightly(client, cron="* * * * *")
    await set_state(session, site["id"], "enabled")
    state = app_state(app)
    async with session_scope(state.sessionmaker) as writing:
        # As if it was created two minutes ago: one slot is missed, the newest fires.
        schedule = await schedules.get(writing, schedule_id)
        schedule.counted_from -= timedelta(seconds=150)
    settings = state.settings.model_copy(update={"schedule_grace": timedelta(minutes=10)})
    ctx = RelayContext(
        settings, state.catalog, state.sessionmaker, state.redis, state.secret_box, ""
    )
    passes = [Scheduler(replace(ctx, name=name)) for name in ("one", "two")]
    recorded = [await scheduler.tick() for scheduler in passes]
    assert recorded[0] >= 2 and recorded[1] <= 1  # the second finds them recorded
    slots = (await client.get(f"/api/v1/schedules/{schedule_id}/slots")).json()["items"]
    first = [slot["outcome"] for slot in reversed(slots) if slot["recorded_by"] == "one"]
    assert len(first) in (2, 3) and first == ["missed"] * (len(first) - 1) + ["fired"]
    assert len(slots) == sum(recorded)
    fired = [slot["run_id"] for slot in slots if slot["outcome"] == "fired"]
    assert await _count(session, Run) == len(set(fired)) == len(fired)
