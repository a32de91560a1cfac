"""Schedules: an operation of an entity on cron slots; and each slot's outcome."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONData, utcnow


class MissedPolicy(StrEnum):
    """What happens to the newest slot missed while no scheduler ran."""

    run_once = "run_once"
    skip = "skip"


class SlotOutcome(StrEnum):
    fired = "fired"
    skipped = "skipped"
    missed = "missed"


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_team_id_name", "team_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    # The team is the entity's: kept here so that lists filter without a join.
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    # The target: an operation of an entity (a batch target comes later, see fire()).
    target: Mapped[str] = mapped_column(String(20), default="operation")
    operation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    operation_type: Mapped[str] = mapped_column(String(63))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # Values given once, per task key then field; secrets sealed as on task instances.
    values: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    paused: Mapped[bool] = mapped_column(default=False)
    missed_policy: Mapped[str] = mapped_column(String(20), default=MissedPolicy.run_once)
    keep_last: Mapped[int | None] = mapped_column(default=None)
    keep_days: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(150))
    # Slots after this instant count (creation, or a change of cron or zone), in the
    # schedules' clock (app.clock).
    counted_from: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduleSlot(Base):
    """One cron slot of a schedule, recorded once (unique): what became of it."""

    __tablename__ = "schedule_slots"
    __table_args__ = (UniqueConstraint("schedule_id", "slot_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    slot_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(20))
    # Why it was skipped or missed, or what was late about it.
    note: Mapped[str | None] = mapped_column(Text, default=None)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), default=None
    )
    # The prune run started after this slot's backup succeeded (retention).
    prune_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), default=None
    )
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by: Mapped[str | None] = mapped_column(String(200), default=None)
