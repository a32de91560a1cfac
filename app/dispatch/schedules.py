"""Schedules: an operation run on cron slots, each slot recorded once, whatever the
number of schedulers.

Slots are decided by ``plan`` (pure) and recorded by ``record_slot``, one transaction
per slot: the slot's row and the run it starts are written together, and the unique
(schedule_id, slot_at) lets only one scheduler's transaction through.

Runs are requested by a system principal, ``schedule <name>``, holding the operator
role on the schedule's team only: a schedule keeps working when the person who
created it leaves the team (anyone who may change it is an operator of that team).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.catalog.registry import Catalog
from app.dispatch.audit import record
from app.dispatch.runs import operation_type, request
from app.dispatch.task_values import merged_values, opened_form, stored_form
from app.entities.operation import repository as operations
from app.entities.operation.models import Operation
from app.entities.schedule import repository as schedules
from app.entities.schedule.models import MissedPolicy, Schedule, SlotOutcome
from app.entities.schedule.schemas import ZONES, ScheduleCreate, ScheduleUpdate
from app.entities.team.models import Role
from app.errors import AegirError, InvalidInput
from app.queue import QueueClient
from app.security.crypto import MARK, SecretBox
from app.security.principal import Principal

PRUNE_OPERATION = "prune_backups"
PRUNE_TASK = "prune"
# At most this many slots are recorded per schedule in one pass (a minute cron after a
# long outage): the rest in the next passes, oldest first.
MAX_SLOTS_PER_PASS = 500


# Cron and zone.


def zone(name: str, loc: tuple[str, ...]) -> ZoneInfo:
    try:
        if name not in ZONES:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)"
        raise InvalidInput.field(loc, msg) from None


def cron_times(cron: str, tz: str, after: datetime, where: str = "body") -> CronSim:
    """The slots strictly after ``after``, in the zone (cronsim handles DST)."""
    local = zone(tz, (where, "timezone"))
    try:
        return CronSim(cron, after.astimezone(local))
    except (CronSimError, ValueError) as error:
        msg = f"bad cron expression {cron!r}: {error}"
        raise InvalidInput.field((where, "cron"), msg) from None


def next_times(cron: str, tz: str, count: int = 5, after: datetime | None = None) -> list[datetime]:
    times = cron_times(cron, tz, after or clock.now())
    return [next(times).astimezone(UTC) for _ in range(count)]


def preview(cron: str, tz: str, count: int = 3, where: str = "body") -> tuple[str, list[datetime]]:
    """'At 02:00 every day (Europe/Paris), next: 2026-11-28 02:00 CET, ...' and the times."""
    times = cron_times(cron, tz, clock.now(), where)
    local = zone(tz, (where, "timezone"))
    upcoming = [next(times) for _ in range(count)]
    shown = ", ".join(at.astimezone(local).strftime("%Y-%m-%d %H:%M %Z") for at in upcoming)
    return f"{times.explain()} ({tz}), next: {shown}", [at.astimezone(UTC) for at in upcoming]


# Changes, as a person asks for them.


async def create(
    session: AsyncSession,
    catalog: Catalog,
    box: SecretBox,
    principal: Principal,
    operation: Operation,
    body: ScheduleCreate,
) -> Schedule:
    """``operation``: as ``operations.get`` loads it (the route's access type did)."""
    principal.require(operation.entity.team_id, Role.operator, f"operation with id {operation.id}")
    cron_times(body.cron, body.timezone, clock.now())
    _check_retention(catalog, operation, body.keep_last, body.keep_days)
    schedule = Schedule(
        id=uuid.uuid4(),
        name=body.name,
        team_id=operation.entity.team_id,
        operation_id=operation.id,
        entity_id=operation.entity_id,
        operation_type=operation.type,
        cron=body.cron,
        timezone=body.timezone,
        values=checked_values(catalog, box, operation, body.values),
        paused=body.paused,
        missed_policy=body.missed_policy,
        keep_last=body.keep_last,
        keep_days=body.keep_days,
        created_by=principal.username,
        counted_from=clock.now(),
    )
    schedules.add(session, schedule)
    await session.flush()
    _audit(session, principal, "schedule.created", schedule, cron=body.cron)
    return schedule


async def change(
    session: AsyncSession,
    catalog: Catalog,
    box: SecretBox,
    principal: Principal,
    schedule: Schedule,
    body: ScheduleUpdate,
) -> Schedule:
    principal.require(schedule.team_id, Role.operator, f"schedule with id {schedule.id}")
    given = body.model_dump(exclude_unset=True)
    cron, tz = given.get("cron") or schedule.cron, given.get("timezone") or schedule.timezone
    cron_times(cron, tz, clock.now())
    operation = await operations.get(session, schedule.operation_id)
    keep_last = given.get("keep_last", schedule.keep_last)
    keep_days = given.get("keep_days", schedule.keep_days)
    _check_retention(catalog, operation, keep_last, keep_days)
    if body.values is not None:
        schedule.values = checked_values(catalog, box, operation, body.values)
    if (cron, tz) != (schedule.cron, schedule.timezone):
        # Slots of the old cron between the last one and now are not missed ones.
        schedule.counted_from = clock.now()
    for name in ("name", "missed_policy"):
        if given.get(name) is not None:
            setattr(schedule, name, given[name])
    schedule.cron, schedule.timezone = cron, tz
    schedule.keep_last, schedule.keep_days = keep_last, keep_days
    await session.flush()
    _audit(session, principal, "schedule.changed", schedule, fields=",".join(sorted(given)))
    return schedule


async def set_paused(
    session: AsyncSession, principal: Principal, schedule: Schedule, paused: bool
) -> Schedule:
    """Slots while paused are recorded as skipped (paused)."""
    principal.require(schedule.team_id, Role.operator, f"schedule with id {schedule.id}")
    schedule.paused = paused
    await session.flush()
    _audit(session, principal, "schedule.paused" if paused else "schedule.resumed", schedule)
    return schedule


async def remove(session: AsyncSession, principal: Principal, schedule: Schedule) -> None:
    principal.require(schedule.team_id, Role.operator, f"schedule with id {schedule.id}")
    _audit(session, principal, "schedule.deleted", schedule)
    await schedules.remove(session, schedule)


def _audit(
    session: AsyncSession, principal: Principal, action: str, schedule: Schedule, **detail: str
) -> None:
    record(session, principal, action, target_kind="schedule", target_id=schedule.id,
           team_id=schedule.team_id, name=schedule.name, **detail)  # fmt: skip


def checked_values(
    catalog: Catalog, box: SecretBox, operation: Operation, values: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Values validated as a run's would be (against the operation's composed schema, over
    the tasks' current values); kept as given, secrets sealed as on task instances."""
    kind, op_type = operation_type(catalog, operation)
    tasks = {step.task.key: step.task for step in operation.steps}
    present = [key for key in op_type.task_keys if key in tasks]
    types = {key: tasks[key].type for key in present}
    merged = merged_values(catalog, types, {key: tasks[key].values for key in present}, values, box)
    try:
        validated = catalog.values_model(kind.name, op_type.name).model_validate(merged)
    except ValidationError as error:
        raise InvalidInput.from_validation(error, ["body", "values"]) from None
    kept: dict[str, dict[str, Any]] = {}
    for key, given in values.items():
        stored = stored_form(catalog.tasks[tasks[key].type], getattr(validated, key), box)
        kept[key] = {name: value for name, value in stored.items() if name in given}
    return kept


def shown_values(schedule: Schedule) -> dict[str, dict[str, Any]]:
    """The schedule's values as a reader sees them: secrets (kept sealed) left out."""
    return {
        key: {name: value for name, value in stored.items() if not _sealed(value)}
        for key, stored in schedule.values.items()
    }


def _sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(MARK)


def _check_retention(
    catalog: Catalog, operation: Operation, keep_last: int | None, keep_days: int | None
) -> None:
    """Retention only where it means something: an operation that writes a backup archive,
    on an entity that has the prune operation."""
    if keep_last is None and keep_days is None:
        return
    kind, op_type = operation_type(catalog, operation)
    writes_archive = any(kind.tasks[key] == "backup_archive" for key in op_type.steps)
    if not writes_archive or PRUNE_OPERATION not in kind.operations:
        raise InvalidInput.field(
            ("body", "keep_last" if keep_last is not None else "keep_days"),
            f"retention applies to an operation that writes a backup archive; "
            f"{operation.type} of {kind.name} does not",
        )


# Slots, as the scheduler finds them due.


@dataclass(frozen=True)
class Slot:
    at: datetime
    outcome: SlotOutcome
    note: str | None = None


def plan(schedule: Schedule, last: datetime | None, now: datetime, grace: timedelta) -> list[Slot]:
    """What to record for the schedule's slots due since its last recorded one.

    The newest due slot fires if it is within ``grace`` of its time; older ones were
    missed while no scheduler ran. A late newest slot is missed too, and the schedule's
    policy decides whether it runs once on recovery. While paused, every slot is
    skipped. A busy entity is no reason to skip: the run queues behind the other.
    """
    after = max(last, schedule.counted_from) if last else schedule.counted_from
    times = cron_times(schedule.cron, schedule.timezone, after)
    due: list[datetime] = []
    while len(due) < MAX_SLOTS_PER_PASS and (at := next(times)) <= now:
        due.append(at.astimezone(UTC))
    if schedule.paused:
        return [Slot(at, SlotOutcome.skipped, "paused") for at in due]
    slots = [Slot(at, SlotOutcome.missed, "no scheduler was running") for at in due[:-1]]
    if due:
        slots.append(_newest(schedule, due[-1], now, grace))
    return slots


def _newest(schedule: Schedule, at: datetime, now: datetime, grace: timedelta) -> Slot:
    late = now - at
    if late <= grace:
        return Slot(at, SlotOutcome.fired)
    how = f"found {_span(late)} late (no scheduler was running)"
    if schedule.missed_policy == MissedPolicy.run_once:
        return Slot(at, SlotOutcome.fired, f"{how}; run once on recovery")
    return Slot(at, SlotOutcome.missed, f"{how}; policy: skip")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def system_principal(schedule: Schedule) -> Principal:
    """Who a schedule's runs are requested by: see the module's docstring."""
    return Principal(
        user_id=schedule.id,
        username=f"schedule {schedule.name}",
        is_admin=False,
        roles={schedule.team_id: Role.operator},
        via="schedule",
    )


async def record_slot(
    session: AsyncSession,
    catalog: Catalog,
    redis: QueueClient,
    box: SecretBox,
    schedule: Schedule,
    slot: Slot,
    by: str,
) -> uuid.UUID | None:
    """Record one slot and, if it fires, start its run, in the caller's transaction.

    ``None`` when another scheduler recorded the slot first: nothing else was done.
    A slot whose run cannot be requested (the entity is not in a state the operation
    runs in, its values no longer validate) is recorded as missed, saying why.
    """
    slot_id = await schedules.record_slot(
        session, schedule.id, slot.at, slot.outcome, slot.note, by
    )
    if slot_id is None or slot.outcome != SlotOutcome.fired:
        return slot_id
    try:
        async with session.begin_nested():
            run_id = await fire(session, catalog, redis, box, schedule)
    except AegirError as error:
        note = f"{slot.note}; " if slot.note else ""
        await schedules.set_slot(
            session, slot_id, outcome=SlotOutcome.missed, note=f"{note}not run: {error.message}"
        )
        return slot_id
    await schedules.set_slot(session, slot_id, run_id=run_id)
    return slot_id


async def fire(
    session: AsyncSession, catalog: Catalog, redis: QueueClient, box: SecretBox, schedule: Schedule
) -> uuid.UUID:
    """Start what the schedule targets; the one place a new kind of target (a batch)
    is added. Returns the run's id."""
    if schedule.target != "operation":
        raise AegirError(f"schedule target {schedule.target!r} is not supported here", 409)
    operation = await operations.get(session, schedule.operation_id)
    values = _opened(catalog, operation, schedule.values, box)
    principal = system_principal(schedule)
    run = await request(session, catalog, redis, box, principal, operation, values)
    return run.id


def _opened(
    catalog: Catalog, operation: Operation, stored: dict[str, dict[str, Any]], box: SecretBox
) -> dict[str, dict[str, Any]]:
    types = {step.task.key: step.task.type for step in operation.steps}
    return {
        key: opened_form(catalog.tasks[types[key]], values, box) if key in types else values
        for key, values in stored.items()
    }


class AlreadyPruned(Exception):
    """Another scheduler started this slot's prune run first: roll back ours."""


async def start_prune(
    session: AsyncSession,
    catalog: Catalog,
    redis: QueueClient,
    box: SecretBox,
    schedule: Schedule,
    slot_id: uuid.UUID,
) -> uuid.UUID | None:
    """After a successful backup run of the schedule's own: the entity's prune run,
    with the schedule's retention. ``AlreadyPruned`` when another scheduler did."""
    found = [o for o in await operations.for_entity(session, schedule.entity_id)
             if o.type == PRUNE_OPERATION]  # fmt: skip
    if not found:
        await schedules.set_slot(session, slot_id, note="no prune operation on this entity")
        return None
    operation = await operations.get(session, found[0].id)
    keep = {"keep_last": schedule.keep_last, "keep_days": schedule.keep_days}
    principal = system_principal(schedule)
    run = await request(session, catalog, redis, box, principal, operation, {PRUNE_TASK: keep})
    if not await schedules.claim_prune(session, slot_id, run.id):
        raise AlreadyPruned
    return run.id
