from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from app.entities.schedule.models import MissedPolicy, SlotOutcome
from app.schemas import Schema

CRON_HELP = "Five fields (minute hour day month weekday), e.g. '0 2 * * *' for 02:00 daily."


class ScheduleBase(Schema):
    name: str = Field(min_length=1, max_length=100, description="What it is for.")
    cron: str = Field(min_length=1, max_length=200, description=CRON_HELP)
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone, e.g. Europe/Paris.")
    missed_policy: MissedPolicy = Field(
        default=MissedPolicy.run_once,
        description="The newest slot missed while no scheduler ran: run once on recovery, or skip.",
    )
    keep_last: int | None = Field(
        default=None, ge=1, le=100_000, description="Retention: keep the newest N archives."
    )
    keep_days: int | None = Field(
        default=None, ge=1, le=100_000, description="Retention: keep archives younger than N days."
    )


class ScheduleCreate(ScheduleBase):
    operation_id: uuid.UUID = Field(description="The entity's operation to run.")
    values: dict[str, dict[str, Any]] = Field(
        default={}, description="Values per task key, then field, sent with every run."
    )
    paused: bool = False


class ScheduleUpdate(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=CRON_HELP)
    timezone: str | None = Field(default=None, max_length=64)
    missed_policy: MissedPolicy | None = None
    keep_last: int | None = Field(default=None, ge=1, le=100_000)
    keep_days: int | None = Field(default=None, ge=1, le=100_000)
    values: dict[str, dict[str, Any]] | None = None


class SchedulePreview(Schema):
    text: str = Field(description="e.g. 'At 02:00 every day (Europe/Paris), next: ...'")
    next: list[datetime]


class ScheduleRead(ScheduleBase):
    id: uuid.UUID
    team_id: uuid.UUID
    target: str
    operation_id: uuid.UUID
    entity_id: uuid.UUID
    operation_type: str
    values: dict[str, dict[str, Any]] = Field(description="Values sent; secrets left out.")
    paused: bool
    created_by: str
    counted_from: datetime = Field(
        description="Slots after this instant count (creation, or the last change of cron or zone)."
    )
    created_at: datetime
    updated_at: datetime
    preview: str
    next: list[datetime] = Field(description="The next fire times, in UTC.")


class SlotRead(Schema):
    id: uuid.UUID
    slot_at: datetime
    outcome: SlotOutcome
    note: str | None
    run_id: uuid.UUID | None
    prune_run_id: uuid.UUID | None
    recorded_at: datetime
    recorded_by: str | None
