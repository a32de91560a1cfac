"""Batches: one operation over many entities, with bounded concurrency.

``start`` checks the selection and the values (once per entity, against its
operation's composed schema: a 422 names the field and the entity) and writes the
batch and its items in one transaction. ``advance`` is one step of a driver
(``relay/batches.py``): follow the items' runs, apply ``max_failures``, start pending
items up to the limit, finish the batch. ``cancel`` ends pending items at once and
asks running items' runs to stop.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind
from app.db import after_commit
from app.dispatch import runs as run_service
from app.dispatch.audit import record
from app.dispatch.preconditions import check_values
from app.dispatch.task_values import opened_form
from app.entities.batch import repository as batches
from app.entities.batch.models import Batch, BatchItem, BatchStatus, ItemStatus
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.operation.models import Operation
from app.entities.run import repository as runs
from app.entities.run.states import FINAL, RunStatus
from app.entities.team.models import Role
from app.errors import AegirError, Conflict, InvalidInput
from app.events import STATUS_CHANNEL, dumps, publish
from app.queue import QueueClient
from app.security.crypto import SecretBox
from app.security.principal import Principal

# How an ended run leaves its item.
ITEM_AFTER_RUN = {
    RunStatus.succeeded: ItemStatus.succeeded,
    RunStatus.failed: ItemStatus.failed,
    RunStatus.lost: ItemStatus.failed,
    RunStatus.cancelled: ItemStatus.cancelled,
}


@dataclass(frozen=True)
class Selection:
    """Which entities: ``ids`` (in that order), or every entity of the kind whose
    ``role`` reference is ``target`` (by name), optionally only those in ``state``."""

    ids: Sequence[uuid.UUID] | None = None
    role: str | None = None
    target: uuid.UUID | None = None
    state: str | None = None
    # An entity in one of these states is skipped, with these words as why.
    skip_states: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        skip = {"skip_states": dict(self.skip_states)} if self.skip_states else {}
        if self.ids is not None:
            return {"ids": [str(i) for i in self.ids], **skip}
        return {"role": self.role, "target": str(self.target), "state": self.state, **skip}


@dataclass(frozen=True)
class Services:
    """What starting runs needs: the catalogue, Redis (enqueue, publish), the secret box."""

    catalog: Catalog
    redis: QueueClient
    box: SecretBox


async def start(
    session: AsyncSession,
    services: Services,
    principal: Principal,
    *,
    kind: str,
    operation: str,
    selection: Selection,
    values: dict[str, dict[str, Any]],
    concurrency: int = 2,
    max_failures: int | None = None,
    parent_run_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> Batch:
    """Check everything, then write the batch and its items (the caller's boundary
    commits; nothing is written when a check fails). The principal must be an operator
    of the selected entities' team; a batch spans one team."""
    entity_kind = _kind(services.catalog, kind, operation)
    _known_tasks(entity_kind, operation, values)
    team_id, selected = await _select(session, principal, entity_kind, selection)
    operations = await batches.operations_of(session, [e.id for e in selected], operation)
    by_entity = {op.entity_id: op for op in operations}
    for entity in selected:
        await _check_item(session, services, entity, by_entity.get(entity.id), values)
    batch = Batch(
        team_id=team_id,
        kind=kind,
        operation=operation,
        values=_sealed(services, entity_kind, operation, values),
        selection=selection.describe(),
        concurrency=concurrency,
        max_failures=max_failures,
        status=BatchStatus.running,
        created_by=principal.username,
        # A schedule is no user: its batches are found again through their parent run.
        created_by_id=None if principal.via == "schedule" else principal.user_id,
        parent_run_id=parent_run_id,
    )
    batch.items = [
        BatchItem(entity_id=e.id, entity_name=e.name, position=i, status=ItemStatus.pending)
        for i, e in enumerate(selected)
    ]
    await batches.add(session, batch)
    record(session, principal, "batch.started", target_kind="batch", target_id=batch.id,
           team_id=team_id, ip=ip, operation=operation, items=len(selected))  # fmt: skip
    after_commit(session, partial(announce, services.redis, batch.id, team_id, batch.status))
    return batch


def _kind(catalog: Catalog, kind: str, operation: str) -> EntityKind:
    entity_kind = catalog.kinds.get(kind)
    if entity_kind is None:
        raise InvalidInput.field(["body", "kind"], f"there is no entity kind {kind!r}")
    if operation not in entity_kind.operations:
        raise InvalidInput.field(["body", "operation"], f"a {kind} has no operation {operation!r}")
    return entity_kind


def _known_tasks(kind: EntityKind, operation: str, values: dict[str, dict[str, Any]]) -> None:
    """Values only for the operation's tasks (checked here too: a selection that matches
    no entity validates nothing else)."""
    known = kind.operations[operation].task_keys
    for key in values:
        if key not in known:
            raise InvalidInput.field(
                ["body", "values", key], f"{operation} has no task {key!r}", "extra_forbidden"
            )


async def _select(
    session: AsyncSession, principal: Principal, kind: EntityKind, selection: Selection
) -> tuple[uuid.UUID, list[Entity]]:
    """The batch's team and its entities, in order."""
    if selection.ids is not None:
        return await _by_ids(session, principal, kind, selection.ids)
    if selection.role not in kind.references or selection.target is None:
        raise InvalidInput.field(
            ["body", "filter", "role"], f"a {kind.name} has no reference {selection.role!r}"
        )
    target = await entities.get(session, selection.target)
    principal.require(target.team_id, Role.operator, f"entity with id {selection.target}")
    found = await batches.referencing(
        session, kind.name, selection.role, target.id, target.team_id, selection.state
    )
    return target.team_id, found


async def _by_ids(
    session: AsyncSession, principal: Principal, kind: EntityKind, ids: Sequence[uuid.UUID]
) -> tuple[uuid.UUID, list[Entity]]:
    if not ids:
        raise InvalidInput.field(["body", "ids"], "select at least one entity")
    if len(set(ids)) != len(ids):
        raise InvalidInput.field(["body", "ids"], "an entity is selected twice")
    found = await entities.get_many(session, ids)
    teams: set[uuid.UUID] = set()
    for n, entity_id in enumerate(ids):
        entity = found.get(entity_id)
        if entity is None or not principal.can(entity.team_id, Role.viewer):
            raise InvalidInput.field(["body", "ids", n], f"no {kind.name} with id {entity_id}")
        if entity.kind != kind.name:
            raise InvalidInput.field(["body", "ids", n], f"{entity.name} is a {entity.kind}")
        principal.require(entity.team_id, Role.operator, f"{kind.name} with id {entity_id}")
        teams.add(entity.team_id)
    if len(teams) > 1:
        raise InvalidInput.field(["body", "ids"], "a batch's entities belong to one team")
    return teams.pop(), [found[i] for i in ids]


async def _check_item(
    session: AsyncSession,
    services: Services,
    entity: Entity,
    operation: Operation | None,
    values: dict[str, dict[str, Any]],
) -> None:
    """The values, validated as a run request on this entity would; its state is not
    checked here (an item whose entity is in the wrong state is skipped, with why)."""
    if operation is None:
        raise Conflict(f"{entity.name} has no such operation; its graph is outdated")
    kind, op_type = run_service.operation_type(services.catalog, operation)
    tasks = {step.task.key: step.task for step in operation.steps}
    try:
        validated = run_service.validate(services.catalog, kind, op_type, tasks, values,
                                         services.box)  # fmt: skip
        types = {key: task.type for key, task in tasks.items()}
        await check_values(session, services.catalog, entity, op_type, types, validated)
    except InvalidInput as error:
        raise InvalidInput(
            [{**e, "msg": f"{entity.kind} {entity.name}: {e['msg']}"} for e in error.errors]
        ) from None


def _sealed(
    services: Services, kind: EntityKind, operation: str, values: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The values as given, their secrets sealed (as task instances keep them)."""
    sealed: dict[str, Any] = {}
    for key, given in values.items():
        secret = services.catalog.tasks[kind.tasks[key]].secret_fields()
        sealed[key] = {
            name: services.box.seal(str(value)) if name in secret and value else value
            for name, value in given.items()
        }
    return sealed


def opened_values(services: Services, batch: Batch) -> dict[str, dict[str, Any]]:
    """The batch's values with their secrets opened, for a run request."""
    kind = services.catalog.kinds[batch.kind]
    return {
        key: opened_form(services.catalog.tasks[kind.tasks[key]], given, services.box)
        for key, given in batch.values.items()
    }


async def cancel(
    session: AsyncSession, services: Services, principal: Principal, batch: Batch,
    ip: str | None = None,
) -> Batch:  # fmt: skip
    """Pending items are cancelled at once; running items' runs are asked to stop (the
    driver then follows them to their end and closes the batch). 409 if it has ended."""
    batch_id, team_id = batch.id, batch.team_id
    principal.require(team_id, Role.operator, f"batch with id {batch_id}")
    if batch.finished_at is not None or batch.status == BatchStatus.cancelled:
        raise Conflict(f"the batch has already ended: {batch.status}")
    held = await batches.hold(session, batch_id)
    if held is None:
        raise Conflict("the batch has already ended")
    await batches.set_status(session, batch_id, BatchStatus.cancelled, only_from=held.status)
    await batches.end_pending(session, batch_id, ItemStatus.cancelled, "the batch was cancelled")
    record(session, principal, "batch.cancelled", target_kind="batch", target_id=batch_id,
           team_id=team_id, ip=ip)  # fmt: skip
    # Ids first: cancelling a run expires the session's objects.
    running = await batches.items_in(session, batch_id, [ItemStatus.running])
    for run_id in [item.run_id for item in running if item.run_id is not None]:
        await _cancel_run(session, services, principal, run_id)
    after_commit(session, partial(announce, services.redis, batch_id, team_id,
                                  BatchStatus.cancelled))  # fmt: skip
    session.expire_all()
    return await batches.get(session, batch_id)


async def _cancel_run(
    session: AsyncSession, services: Services, principal: Principal, run_id: uuid.UUID
) -> None:
    run = await runs.get(session, run_id)
    if run.status in FINAL:
        return  # ended meanwhile: the driver follows it
    with contextlib.suppress(Conflict):  # it ended between the read and the move
        await run_service.cancel(session, services.redis, principal, run)


async def announce(
    redis: QueueClient, batch_id: uuid.UUID, team_id: uuid.UUID, status: str, **extra: Any
) -> None:
    """Tell ``/ws/events`` subscribers of the team that the batch changed."""
    body = {"batch": str(batch_id), "team": str(team_id), "status": status, **extra}
    await publish(redis, [(STATUS_CHANNEL, dumps(body))])


def is_expected(error: Exception) -> bool:
    """An error that skips an item (its state, its values): said in words, not raised."""
    return isinstance(error, AegirError)
