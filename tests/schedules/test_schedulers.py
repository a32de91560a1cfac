"""Two schedulers (two relays) over a simulated day: each slot recorded and run once;
slots missed while no scheduler ran are recorded, and handled by each policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from cronsim import CronSim

from tests.fixtures.stack import wait_for
from tests.schedules.conftest import FastStack

pytestmark = pytest.mark.e2e

RELAYS = ("relay", "relay-2")


def _schedule(http: httpx.Client, app: dict[str, Any], **body: Any) -> dict[str, Any]:
    op = next(o["id"] for o in app["operations"] if o["type"] == "noop")
    response = http.post("/api/v1/schedules", json={"operation_id": op, **body})
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


def _slots(http: httpx.Client, schedule: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"/api/v1/schedules/{schedule['id']}/slots"
    slots: list[dict[str, Any]] = []
    while len(page := http.get(url, params={"limit": 200, "offset": len(slots)}).json()["items"]):
        slots += page
    return sorted(slots, key=lambda slot: slot["slot_at"])


def _recorded(http: httpx.Client, schedule: dict[str, Any], count: int) -> bool:
    return len(_slots(http, schedule)) >= count


def _runs(http: httpx.Client, app: dict[str, Any]) -> set[str]:
    page = http.get("/api/v1/runs", params={"entity": app["id"], "limit": 200}).json()
    assert page["total"] <= 200
    return {run["id"] for run in page["items"]}


def _expected(cron: str, after: str, count: int) -> list[datetime]:
    times = CronSim(cron, datetime.fromisoformat(after))
    return [next(times) for _ in range(count)]


def _relays(fast: FastStack, running: bool) -> None:
    for name in RELAYS:
        process = fast.stack.processes.get(name)
        alive = process is not None and process.poll() is None
        if running and not alive:
            fast.stack.processes.pop(name, None)
            fast.stack.start_process(name)
        elif not running and alive:
            fast.stack.kill(name)


def test_two_schedulers_fire_each_hourly_slot_of_a_day_exactly_once(fast_stack: FastStack) -> None:
    fast = fast_stack
    _relays(fast, running=True)
    with fast.stack.client() as http:
        app = fast.stack.make_app(http, "hourly")
        schedule = _schedule(http, app, name="hourly", cron="0 * * * *", timezone="UTC")
        day = _expected("0 * * * *", schedule["counted_from"], 24)
        wait_for(lambda: len(_slots(http, schedule)) >= 24, "a day of slots", timeout=90)
        _relays(fast, running=False)  # no slot is recorded while we count
        slots = _slots(http, schedule)
        runs = _runs(http, app)
    assert [datetime.fromisoformat(s["slot_at"]) for s in slots[:24]] == day
    assert {s["outcome"] for s in slots[:24]} == {"fired"}, slots
    fired = [s["run_id"] for s in slots if s["outcome"] == "fired"]
    # One run per fired slot, and no run without its slot.
    assert len(set(fired)) == len(fired) and set(fired) == runs


def test_slots_missed_while_stopped_are_recorded_and_handled_per_policy(
    fast_stack: FastStack,
) -> None:
    fast = fast_stack
    _relays(fast, running=False)
    # Four slots an hour apart, starting two hours from now; then nothing for 20 hours.
    first = fast.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    hours = ",".join(str((first + timedelta(hours=n)).hour) for n in range(4))
    cron = f"0 {hours} * * *"
    with fast.stack.client() as http:
        app = fast.stack.make_app(http, "missed")
        once = _schedule(http, app, name="once", cron=cron, missed_policy="run_once")
        skip = _schedule(http, app, name="skip", cron=cron, missed_policy="skip")
        # Restart three hours after the last slot: later than the grace window.
        fast.sleep_until(first + timedelta(hours=6))
        _relays(fast, running=True)
        for schedule in (once, skip):
            wait_for(partial(_recorded, http, schedule, 4), "the slots", timeout=30)
        once_slots, skip_slots = _slots(http, once), _slots(http, skip)
        runs = _runs(http, app)
    for slots in (once_slots, skip_slots):
        assert [s["outcome"] for s in slots[:3]] == ["missed"] * 3
        assert all(s["run_id"] is None for s in slots[:3])
    newest_once, newest_skip = once_slots[3], skip_slots[3]
    assert newest_once["outcome"] == "fired" and "run once on recovery" in newest_once["note"]
    assert newest_skip["outcome"] == "missed" and "policy: skip" in newest_skip["note"]
    assert newest_skip["run_id"] is None
    assert runs == {newest_once["run_id"]}
