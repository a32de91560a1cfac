"""Run requests: validate values against the operation's composed schema, save, queue."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind, OperationType
from app.dispatch._values import snapshot_form, stored_form
from app.entities.operation import repository as operations
from app.entities.operation.models import Operation
from app.entities.run import repository as runs
from app.entities.run.models import Run, RunStatus, RunTask
from app.entities.task.models import TaskInstance
from app.errors import Conflict, InvalidInput


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
    operation_id: uuid.UUID,
    values: dict[str, dict[str, Any]],
    requested_by: str | None = None,
) -> Run:
    """Save the values on the task instances and create a queued run, atomically."""
    operation = await operations.get(session, operation_id)
    kind, op_type = operation_type(catalog, operation)
    tasks = {step.task.key: step.task for step in operation.steps}
    if missing := [key for key in op_type.task_keys if key not in tasks]:
        raise Conflict(f"operation {operation.type} lacks tasks {missing}; its graph is outdated")
    validated = _validate(catalog, kind, op_type, tasks, values)
    snapshot: dict[str, Any] = {}
    for key in op_type.task_keys:
        task_type = catalog.tasks[tasks[key].type]
        tasks[key].values = stored_form(task_type, getattr(validated, key))
        snapshot[key] = snapshot_form(task_type, getattr(validated, key))
    run = Run(
        operation_id=operation.id,
        entity_id=operation.entity_id,
        operation_type=operation.type,
        status=RunStatus.queued,
        values=snapshot,
        requested_by=requested_by,
    )
    run.tasks = [
        RunTask(position=i, task_key=key, task_type=tasks[key].type)
        for i, key in enumerate(op_type.steps)
    ]
    session.add(run)
    await session.flush()
    return await runs.get(session, run.id)


def _validate(
    catalog: Catalog,
    kind: EntityKind,
    op_type: OperationType,
    tasks: dict[str, TaskInstance],
    values: dict[str, dict[str, Any]],
) -> Any:
    # Fields left out keep the task's current value; unknown keys stay in, to be refused.
    merged: dict[str, Any] = {key: dict(tasks[key].values) for key in op_type.task_keys}
    for key, given in values.items():
        merged[key] = {**merged.get(key, {}), **given}
    try:
        return catalog.values_model(kind.name, op_type.name).model_validate(merged)
    except ValidationError as error:
        raise InvalidInput.from_validation(error, ["body", "values"]) from None
