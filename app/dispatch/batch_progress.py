"""One step of a batch driver: follow the items' runs, stop after too many failures,
start pending items up to the limit, and close the batch once nothing is left.

Everything in one transaction that holds the batch's row (``batches.hold``): the
running count read here stays true until the commit, and an item's move from
pending to running is a conditional UPDATE in the same transaction as its run
request, so two drivers never start an item twice nor exceed the limit.
"""

from __future__ import annotations

import uuid
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit
from app.dispatch import runs as run_service
from app.dispatch.batches import ITEM_AFTER_RUN, Services, announce, is_expected, opened_values
from app.dispatch.schedules import system_principal
from app.entities.batch import repository as batches
from app.entities.batch.models import Batch, BatchItem, BatchStatus, ItemStatus
from app.entities.entity.models import Entity
from app.entities.run.states import FINAL, RunStatus
from app.entities.schedule import repository as schedules
from app.entities.team import repository as teams
from app.entities.user import repository as users
from app.errors import Conflict
from app.security.principal import Principal


async def advance(session: AsyncSession, services: Services, batch_id: uuid.UUID) -> bool:
    """One step; ``True`` if anything moved (the batch's subscribers are told)."""
    batch = await batches.hold(session, batch_id)
    if batch is None:
        return False
    status = BatchStatus(batch.status)
    moved = await _follow(session, batch_id)
    counts = await batches.counts(session, batch_id)
    if status == BatchStatus.running and _too_many_failures(batch, counts):
        reason = f"stopped after {batch.max_failures} failures"
        await batches.end_pending(session, batch_id, ItemStatus.skipped, reason)
        await batches.set_status(session, batch_id, BatchStatus.stopped, only_from=status)
        status, moved = BatchStatus.stopped, True
    elif status == BatchStatus.running:
        moved |= await _start_items(session, services, batch, counts)
    counts = await batches.counts(session, batch_id)
    if not counts.get(ItemStatus.pending) and not counts.get(ItemStatus.running):
        status = await _finish(session, batch, status, counts)
        moved = True
    if moved:
        after_commit(session, partial(announce, services.redis, batch_id, batch.team_id,
                                      status, counts=counts))  # fmt: skip
    return moved


def _too_many_failures(batch: Batch, counts: dict[str, int]) -> bool:
    return batch.max_failures is not None and counts.get(ItemStatus.failed, 0) >= (
        batch.max_failures
    )


async def _follow(session: AsyncSession, batch_id: uuid.UUID) -> bool:
    """Running items whose run has ended take its outcome (the database is the truth)."""
    ended = await batches.ended_runs(session, batch_id, FINAL)
    for item_id, run_status, error, code, finished in ended:
        to = ITEM_AFTER_RUN[RunStatus(run_status)]
        exit_code = "" if code is None else f" (exit code {code})"
        reason = (
            None if to == ItemStatus.succeeded else (error or f"its run {run_status}{exit_code}")
        )
        await batches.move_item(session, item_id, ItemStatus.running, to, reason=reason,
                                finished_at=finished)  # fmt: skip
    return bool(ended)


async def _start_items(
    session: AsyncSession, services: Services, batch: Batch, counts: dict[str, int]
) -> bool:
    free = batch.concurrency - counts.get(ItemStatus.running, 0)
    if free <= 0 or not counts.get(ItemStatus.pending):
        return False
    principal = await _principal(session, batch)
    values = opened_values(services, batch)
    moved = False
    # Skipped items free their slot at once: read on until the slots are full.
    while free > 0:
        pending = await batches.items_in(session, batch.id, [ItemStatus.pending], limit=free)
        if not pending:
            break
        for item in pending:
            started = await _start_item(session, services, batch, item, principal, values)
            free -= started
            moved = True
    return moved


async def _start_item(
    session: AsyncSession,
    services: Services,
    batch: Batch,
    item: BatchItem,
    principal: Principal,
    values: dict[str, dict[str, object]],
) -> int:
    """1 if its run was requested, 0 if it was skipped (or another driver took it)."""
    item_id = item.id
    if not await batches.move_item(session, item_id, ItemStatus.pending, ItemStatus.running):
        return 0
    try:
        operation = await batches.operation_of(session, item.entity_id, batch.operation)
        _check_skip(batch, operation.entity)
        run = await run_service.request(
            session, services.catalog, services.redis, services.box, principal, operation,
            values,
        )  # fmt: skip
    except Exception as error:
        if not is_expected(error):
            raise
        await batches.move_item(session, item_id, ItemStatus.running, ItemStatus.skipped,
                                reason=str(error))  # fmt: skip
        return 0
    await batches.move_item(session, item_id, ItemStatus.running, ItemStatus.running,
                            run_id=run.id, started_at=run.created_at)  # fmt: skip
    return 1


def _check_skip(batch: Batch, entity: Entity) -> None:
    """Skip an entity in a state the batch leaves alone (an upgrade leaves disabled sites)."""
    why = batch.selection.get("skip_states", {}).get(entity.state or "")
    if why:
        raise Conflict(f"{entity.kind} {entity.name} is {entity.state}: {why}")


async def _principal(session: AsyncSession, batch: Batch) -> Principal:
    """Who asked for the batch, with the roles they hold now: one who has lost the
    right to run operations since gets its items skipped, with why."""
    user = None if batch.created_by_id is None else await users.get(session, batch.created_by_id)
    if user is None and batch.parent_run_id is not None:
        # Started by a scheduled run: the schedule's operator role in its team.
        schedule = await schedules.by_fired_run(session, batch.parent_run_id)
        if schedule is not None:
            return system_principal(schedule)
    if user is None:
        return Principal(uuid.UUID(int=0), batch.created_by, False, {})
    roles = await teams.roles_of(session, user.id)
    return Principal(user.id, user.username, user.is_admin, roles)


async def _finish(
    session: AsyncSession, batch: Batch, status: BatchStatus, counts: dict[str, int]
) -> BatchStatus:
    if status == BatchStatus.running:
        failed = counts.get(ItemStatus.failed, 0) + counts.get(ItemStatus.cancelled, 0)
        status = BatchStatus.failed if failed else BatchStatus.succeeded
    skipped = await batches.items_in(session, batch.id, [ItemStatus.skipped])
    summary = {"counts": counts, "skipped": {i.entity_name: i.reason for i in skipped}}
    await batches.finish(session, batch.id, status, summary, summary_text(counts, skipped))
    return status


def summary_text(counts: dict[str, int], skipped: list[BatchItem]) -> str:
    """ "3 succeeded, 1 failed, 1 skipped (a: site a is disabled; ...)"."""
    order = [ItemStatus.succeeded, ItemStatus.failed, ItemStatus.cancelled, ItemStatus.skipped]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    text = ", ".join(parts) or "no items"
    if skipped:
        text += " (" + "; ".join(f"{i.entity_name}: {i.reason}" for i in skipped) + ")"
    return text
