"""Which slots a scheduler records, and how: the rules of ``plan`` on a given clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.dispatch.schedules import Slot, plan
from app.entities.schedule.models import MissedPolicy, Schedule, SlotOutcome

START = datetime(2026, 3, 28, 0, 30, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def _schedule(cron: str = "0 * * * *", tz: str = "UTC", **over: object) -> Schedule:
    fields = {"id": uuid.uuid4(), "name": "s", "team_id": uuid.uuid4(), "cron": cron,
              "timezone": tz, "paused": False, "missed_policy": MissedPolicy.run_once,
              "counted_from": START, **over}  # fmt: skip
    return Schedule(**fields)


def _hour(h: int) -> datetime:
    return START.replace(minute=0) + timedelta(hours=h)


def test_the_due_slot_fires_and_nothing_before_its_time() -> None:
    schedule = _schedule()
    assert plan(schedule, None, _hour(1) - timedelta(seconds=1), GRACE) == []
    assert plan(schedule, None, _hour(1) + timedelta(minutes=2), GRACE) == [
        Slot(_hour(1), SlotOutcome.fired)
    ]
    # Recorded already: nothing more until the next one.
    assert plan(schedule, _hour(1), _hour(1) + timedelta(minutes=30), GRACE) == []


def test_slots_while_paused_are_skipped() -> None:
    slots = plan(_schedule(paused=True), None, _hour(3), GRACE)
    assert [(s.at, s.outcome, s.note) for s in slots] == [
        (_hour(h), SlotOutcome.skipped, "paused") for h in (1, 2, 3)
    ]


def test_a_backlog_is_missed_and_the_policy_decides_the_newest() -> None:
    late = _hour(4) + timedelta(minutes=30)
    once = plan(_schedule(), _hour(1), late, GRACE)
    skip = plan(_schedule(missed_policy=MissedPolicy.skip), _hour(1), late, GRACE)
    for slots in (once, skip):
        assert [s.at for s in slots] == [_hour(2), _hour(3), _hour(4)]
        assert [s.outcome for s in slots[:2]] == [SlotOutcome.missed] * 2
    assert once[-1].outcome == SlotOutcome.fired and "30 min late" in str(once[-1].note)
    assert skip[-1].outcome == SlotOutcome.missed and "policy: skip" in str(skip[-1].note)
    # Within the grace window the newest fires whatever the policy.
    recovered = plan(_schedule(missed_policy=MissedPolicy.skip), _hour(1), _hour(3), GRACE)
    assert [s.outcome for s in recovered] == [SlotOutcome.missed, SlotOutcome.fired]


def test_one_slot_a_day_across_both_daylight_saving_changes() -> None:
    # Paris, 2026: 02:00 does not exist on March 29 (it runs at 03:00 summer time, 01:00
    # UTC), and 02:30 comes twice on October 25 (it runs once, the first time).
    spring = plan(_schedule("0 2 * * *", "Europe/Paris"), None, _at(3, 30, 12), timedelta(days=9))
    assert [s.at for s in spring] == [_at(3, 28, 1), _at(3, 29, 1), _at(3, 30, 0)]
    autumn = _schedule("30 2 * * *", "Europe/Paris", counted_from=_at(10, 24, 0))
    slots = plan(autumn, None, _at(10, 26, 12), timedelta(days=9))
    half = timedelta(minutes=30)
    assert [s.at for s in slots] == [_at(10, 24, 0) + half, _at(10, 25, 0) + half,
                                     _at(10, 26, 1) + half]  # fmt: skip


def _at(month: int, day: int, hour: int) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)
