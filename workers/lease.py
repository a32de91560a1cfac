"""A worker's hold on a run: claim (one run per entity, in order), renew, and the plan.

The attempt number is the fencing token: the claim increments it, every heartbeat and
event carries it, and whatever carries an older one is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from app.catalog.registry import Catalog
from app.catalog.types import TaskType
from app.db import utcnow
from app.dispatch.executor_input import entity_data, task_data
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.operation.models import Operation, OperationTask
from app.entities.run.models import Run, RunLogLine, RunStatus, RunTask
from app.entities.task.models import TaskInstance
from app.security.crypto import SecretBox

ACTIVE = (RunStatus.running, RunStatus.cancelling)


@dataclass(frozen=True)
class Step:
    position: int
    key: str
    task_type: TaskType
    # Runs only after a step failed, to undo what the run did.
    undo: bool = False


@dataclass(frozen=True)
class Claim:
    run_id: uuid.UUID
    attempt: int
    first_seq: int
    steps: list[Step]
    entity: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    secrets: tuple[str, ...]
    # Outputs this attempt wrote, by task key; each is also in ``tasks[key]["outputs"]``.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How each task ended (status, epoch seconds), by position.
    ended_tasks: dict[int, tuple[str, float]] = field(default_factory=dict)


async def claim(
    session: AsyncSession,
    catalog: Catalog,
    box: SecretBox,
    run_id: uuid.UUID,
    lease: timedelta,
    worker: str,
) -> Claim | None:
    """Take the run if it is queued and first in line for its entity; else ``None``."""
    entity_id = await session.scalar(select(Run.entity_id).where(Run.id == run_id))
    if entity_id is None:
        return None
    # PostgreSQL: two claims for one entity wait on this row. SQLite has one writer anyway.
    await session.execute(select(Entity.id).where(Entity.id == entity_id).with_for_update())
    attempt = await session.scalar(_claim_statement(run_id, lease, worker))
    if attempt is None:
        return None
    return await _plan(session, catalog, box, run_id, attempt)


def _claim_statement(run_id: uuid.UUID, lease: timedelta, worker: str) -> Any:
    other = aliased(Run)
    ahead = exists().where(
        other.entity_id == Run.entity_id,
        other.id != Run.id,
        or_(
            other.status.in_(ACTIVE),
            (other.status == RunStatus.queued)
            & or_(
                other.created_at < Run.created_at,
                (other.created_at == Run.created_at) & (other.id < Run.id),
            ),
        ),
    )
    now = utcnow()
    return (
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.queued, ~ahead)
        .values(
            status=RunStatus.running,
            attempt=Run.attempt + 1,
            started_at=now,
            lease_expires_at=now + lease,
            worker=worker,
            error=None,
        )
        .returning(Run.attempt)
    )


async def renew(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, lease: timedelta
) -> str | None:
    """Extend the lease; the run's status, or ``None`` when the lease is no longer ours."""
    statement = (
        update(Run)
        .where(Run.id == run_id, Run.attempt == attempt, Run.status.in_(ACTIVE))
        .values(lease_expires_at=utcnow() + lease)
        .returning(Run.status)
    )
    status: str | None = await session.scalar(statement)
    return status


async def finish(
    session: AsyncSession, run_id: uuid.UUID, attempt: int, status: str, code: int, last_seq: int
) -> uuid.UUID | None:
    """Record the end, if the run is still ours; answers its entity, now free."""
    statement = (
        update(Run)
        .where(Run.id == run_id, Run.attempt == attempt, Run.status.in_(ACTIVE))
        .values(
            status=status,
            exit_code=code,
            finished_at=utcnow(),
            log_emitted=last_seq,
            lease_expires_at=None,
        )
        .returning(Run.entity_id)
    )
    entity_id: uuid.UUID | None = await session.scalar(statement)
    return entity_id


async def store_outputs(
    session: AsyncSession, entity_id: uuid.UUID, outputs: dict[str, dict[str, Any]]
) -> None:
    """Merge what the run's tasks wrote back into their task instances."""
    for key, written in outputs.items():
        if not written:
            continue
        task = await session.scalar(
            select(TaskInstance).where(TaskInstance.entity_id == entity_id, TaskInstance.key == key)
        )
        if task is not None:
            task.outputs = {**task.outputs, **written}


async def store_task_ends(
    session: AsyncSession, run_id: uuid.UUID, ended: dict[int, tuple[str, float]]
) -> None:
    """How each task ended, stored with the run's end (the relay stores the same)."""
    for position, (status, at) in ended.items():
        await session.execute(
            update(RunTask)
            .where(RunTask.run_id == run_id, RunTask.position == position)
            .values(status=status, finished_at=datetime.fromtimestamp(at, UTC))
        )


async def _resolve_references(
    session: AsyncSession, catalog: Catalog, entity: Entity, tasks: dict[str, dict[str, Any]]
) -> None:
    """Fields naming another entity: that entity as plain data, in ``refs``."""
    for task in tasks.values():
        task["refs"] = {}
        for name, kind in catalog.tasks[task["type"]].reference_fields().items():
            target = task["values"].get(name)
            if target is None:
                continue
            found = await entities.id_in_team(session, kind, str(target), entity.team_id)
            if found is not None:
                task["refs"][name] = await entity_data(session, found)


async def _plan(
    session: AsyncSession, catalog: Catalog, box: SecretBox, run_id: uuid.UUID, attempt: int
) -> Claim:
    run = await session.get_one(Run, run_id)
    query = (
        select(Operation)
        .where(Operation.id == run.operation_id)
        .options(selectinload(Operation.steps).selectinload(OperationTask.task))
    )
    operation = (await session.execute(query)).scalar_one()
    entity = await session.get_one(Entity, run.entity_id)
    kind = catalog.kinds[entity.kind]
    op_type = kind.operations[operation.type]
    instances = {step.task.key: step.task for step in operation.steps}
    steps = [
        Step(i, key, catalog.tasks[instances[key].type]) for i, key in enumerate(op_type.steps)
    ]
    steps += [
        Step(len(steps) + i, key, catalog.tasks[kind.tasks[key]], undo=True)
        for i, key in enumerate(op_type.on_failure)
    ]
    # Every task of the entity, not only this operation's: a backup needs the database
    # task's values, a delete the files task's.
    every = await session.scalars(select(TaskInstance).where(TaskInstance.entity_id == entity.id))
    known = [task for task in every if task.type in catalog.tasks]
    tasks, secrets = task_data(catalog, box, known)
    for key in op_type.on_failure:
        tasks.setdefault(key, {"type": kind.tasks[key], "values": {}, "outputs": {}})
    await _resolve_references(session, catalog, entity, tasks)
    last_seq = await session.scalar(
        select(func.max(RunLogLine.seq)).where(RunLogLine.run_id == run_id)
    )
    return Claim(
        run_id=run_id,
        attempt=attempt,
        first_seq=(last_seq or 0) + 1,
        steps=steps,
        entity=await entity_data(session, run.entity_id),
        tasks=tasks,
        secrets=secrets,
    )
