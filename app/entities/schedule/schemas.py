from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import Field, StrictBool, StringConstraints

from app.catalog.fields import expects
from app.entities.schedule.models import MissedPolicy, SlotOutcome
from app.schemas import Integer, Schema

CRON_HELP = "Five fields (minute hour day month weekday), e.g. '0 2 * * *' for 02:00 daily."
# The form of a cron expression: five fields of digits, names (mon, jan), and * ? # / , -
# and L W. Whether it can ever fire (no 31 February, no range running backwards) is
# checked by cronsim on top: a 422 naming the field.
CRON_PATTERN = r"^[0-9A-Za-z*?#/,-]+( [0-9A-Za-z*?#/,-]+){4}$"
# IANA zones, as the server's tz database has them; a zone is checked against this set
# (ZoneInfo alone would also open "posix/..." and other files). Documented as the form of
# a zone name, not as an enum: six hundred names make a poor generated client enum (and
# "GMT+0", "GMT-0" and "GMT0" one member).
ZONES = frozenset(available_timezones())
ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"

Cron = Annotated[
    str,
    StringConstraints(min_length=9, max_length=200, pattern=CRON_PATTERN),
    expects("five fields separated by spaces, such as 0 2 * * * (02:00 every day)"),
    Field(description=CRON_HELP, examples=["0 2 * * *"]),
]
TimeZone = Annotated[
    str,
    StringConstraints(max_length=64, pattern=ZONE_PATTERN),
    expects("an IANA time zone such as Europe/Paris"),
    Field(description="IANA zone, e.g. Europe/Paris.", examples=["Europe/Paris"]),
]


class ScheduleBase(Schema):
    name: str = Field(min_length=1, max_length=100, description="What it is for.")
    cron: Cron
    timezone: TimeZone = "UTC"
    missed_policy: MissedPolicy = Field(
        default=MissedPolicy.run_once,
        description="The newest slot missed while no scheduler ran: run once on recovery, or skip.",
    )
    keep_last: Integer | None = Field(
        default=None, ge=1, le=100_000, description="Retention: keep the newest N archives."
    )
    keep_days: Integer | None = Field(
        default=None, ge=1, le=100_000, description="Retention: keep archives younger than N days."
    )


class ScheduleCreate(ScheduleBase):
    operation_id: uuid.UUID = Field(description="The entity's operation to run.")
    values: dict[str, dict[str, Any]] = Field(
        default={}, description="Values per task key, then field, sent with every run."
    )
    paused: StrictBool = False


class ScheduleUpdate(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    cron: Cron | None = None
    timezone: TimeZone | None = None
    missed_policy: MissedPolicy | None = None
    keep_last: Integer | None = Field(default=None, ge=1, le=100_000)
    keep_days: Integer | None = Field(default=None, ge=1, le=100_000)
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
