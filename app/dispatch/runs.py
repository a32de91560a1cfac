"""Run requests: validate values against the operation's composed schema, save, queue."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind, OperationType
from app.db import after_commit
from app.dispatch.audit import record
from app.dispatch.preconditions import check_state, check_values
from app.dispatch.task_values import merged_values, snapshot_form, stored_form
from app.entities.operation.models import Operation
from app.entities.run import repository as runs
from app.entities.run.models import Run, RunTask
from app.entities.run.states import RunStatus
from app.entities.task.models import TaskInstance
from app.entities.team.models import Role
from app.errors import Conflict, InvalidInput
from app.events import CANCEL_CHANNEL, publish, status_messages
from app.queue import QueueClient, enqueue_run
from app.security.crypto import SecretBox
from app.security.principal import Principal


def operation_type(catalog: Catalog, operation: Operation) -> tuple[EntityKind, OperationType]:
    kind = catalog.kinds.get(operation.entity.kind)
    op_type = kind.operations.get(operation.type) if kind else None
    if kind is None or op_type is None:
        raise Conflict(
            f"operation {operation.type} of {operation.entity.kind} is not in the catalogue "
            "(was its plugin removed?)"
        )
    return kind, op_type


async def request(
    session: AsyncSession,
    catalog: Catalog,
    redis: QueueClient,
    box: SecretBox,
    principal: Principal,
    operation: Operation,
    values: dict[str, dict[str, Any]],
    ip: str | None = None,
) -> Run:
    """Save the values on the task instances and create a queued run, atomically.

    ``operation``: as ``operations.get`` loads it (steps, tasks and entity), which the
    routes' access dependency has done already. The run is enqueued only after the
    commit; if Redis is down then, the relay's sweep enqueues it later: a run in the
    database is never lost.
    """
    principal.require(operation.entity.team_id, Role.operator, f"operation with id {operation.id}")
    kind, op_type = operation_type(catalog, operation)
    check_state(kind, op_type, operation.entity)
    tasks = {step.task.key: step.task for step in operation.steps}
    if missing := [key for key in op_type.task_keys if key not in tasks]:
        raise Conflict(f"operation {operation.type} lacks tasks {missing}; its graph is outdated")
    validated = validate(catalog, kind, op_type, tasks, values, box)
    types = {key: task.type for key, task in tasks.items()}
    validated = await check_values(session, catalog, operation.entity, op_type, types, validated)
    snapshot: dict[str, Any] = {}
    for key in op_type.task_keys:
        task_type = catalog.tasks[tasks[key].type]
        tasks[key].values = stored_form(task_type, getattr(validated, key), box)
        snapshot[key] = snapshot_form(task_type, getattr(validated, key))
    run = Run(
        operation_id=operation.id,
        entity_id=operation.entity_id,
        operation_type=operation.type,
        status=RunStatus.queued,
        values=snapshot,
        requested_by=principal.username,
    )
    run.tasks = [
        RunTask(position=i, task_key=key, task_type=kind.tasks[key])
        for i, key in enumerate(op_type.steps + op_type.on_failure)
    ]
    session.add(run)
    await session.flush()
    record(session, principal, "run.requested", target_kind="run", target_id=run.id,
           team_id=operation.entity.team_id, ip=ip, operation=operation.type,
           entity=operation.entity.name)  # fmt: skip
    after_commit(session, partial(_announce, redis, run.id, run.entity_id, RunStatus.queued))
    after_commit(session, partial(enqueue_run, redis, run.id))
    return run  # as flushed, with its task rows: nothing to read back


async def cancel(
    session: AsyncSession,
    redis: QueueClient,
    principal: Principal,
    run: Run,
    ip: str | None = None,
) -> Run:
    """A queued run is cancelled at once; a running one is asked to stop; 409 if ended.

    ``run``: as ``runs.get`` loads it, which the routes' access type has done.
    """
    run_id = run.id
    team_id = await runs.team_of(session, run)
    principal.require(team_id, Role.operator, f"run with id {run_id}")
    record(session, principal, "run.cancelled", target_kind="run", target_id=run_id,
           team_id=team_id, ip=ip, was=run.status)  # fmt: skip
    # Read before the move: the session is expired after it, and reloading an expired
    # attribute outside an await is not possible (MissingGreenlet).
    entity_id = run.entity_id
    moved = await runs.cancel(session, run_id)
    session.expire_all()
    if moved is not None:
        messages = status_messages(run_id, moved, entity_id)
        if moved == RunStatus.cancelling:
            # After the status, in the same round trip: Redis delivers in order, so a
            # subscriber hears `cancelling` before the worker can act on the request
            # and publish how the run ended.
            messages.append((CANCEL_CHANNEL, str(run_id)))
        after_commit(session, partial(publish, redis, messages))
    return await runs.get(session, run_id)


async def _announce(
    redis: QueueClient, run_id: uuid.UUID, entity_id: uuid.UUID, status: str
) -> None:
    await publish(redis, status_messages(run_id, status, entity_id))


def validate(
    catalog: Catalog,
    kind: EntityKind,
    op_type: OperationType,
    tasks: dict[str, TaskInstance],
    values: dict[str, dict[str, Any]],
    box: SecretBox,
) -> Any:
    """The values merged over the tasks' current ones, as the operation's composed model;
    422 naming each bad field."""
    types = {key: tasks[key].type for key in op_type.task_keys}
    stored = {key: tasks[key].values for key in op_type.task_keys}
    merged = merged_values(catalog, types, stored, values, box)
    try:
        return catalog.values_model(kind.name, op_type.name).model_validate(merged)
    except ValidationError as error:
        raise InvalidInput.from_validation(error, ["body", "values"]) from None
