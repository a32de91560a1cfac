"""What a worker holds while its lease on a run lasts: the claim and the run's plan.

The claim itself, the renewals and the finish are moves of the run's state machine
(``app.entities.run.repository``); the attempt a claim answers is the fencing token
that every heartbeat, event and finish carries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import OperationType, TaskType
from app.dispatch.executor_input import add_credentials, entity_data, entity_plain, task_data
from app.entities.entity import repository as entities
from app.entities.run import repository as runs
from app.entities.run.repository import Moved
from app.entities.task import repository as task_instances
from app.security.crypto import SecretBox


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
    operation: OperationType
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
    moved = await runs.claim(session, run_id, lease, worker)
    if moved is None:
        return None
    return await _plan(session, catalog, box, run_id, moved)


async def store_outputs(
    session: AsyncSession, entity_id: uuid.UUID, outputs: dict[str, dict[str, Any]]
) -> None:
    """Merge what the run's tasks wrote back into their task instances."""
    for key, written in outputs.items():
        if not written:
            continue
        task = await task_instances.by_key(session, entity_id, key)
        if task is not None:
            task.outputs = {**task.outputs, **written}


async def store_task_ends(
    session: AsyncSession, run_id: uuid.UUID, ended: dict[int, tuple[str, float]]
) -> None:
    """How each task ended, stored with the run's end (the relay stores the same)."""
    await runs.record_task_ends(
        session,
        run_id,
        [(pos, status, datetime.fromtimestamp(at, UTC)) for pos, (status, at) in ended.items()],
    )


async def _resolve_references(
    session: AsyncSession, catalog: Catalog, team_id: uuid.UUID, tasks: dict[str, dict[str, Any]]
) -> None:
    """Fields naming another entity: that entity as plain data, in ``refs``."""
    for task in tasks.values():
        task["refs"] = {}
        for name, kind in catalog.tasks[task["type"]].reference_fields().items():
            target = task["values"].get(name)
            if target is None:
                continue
            found = await entities.id_in_team(session, kind, str(target), team_id)
            if found is not None:
                task["refs"][name] = await entity_data(session, found)


async def _plan(
    session: AsyncSession, catalog: Catalog, box: SecretBox, run_id: uuid.UUID, moved: Moved
) -> Claim:
    """What the run will do, read in as few statements as the claim allows: the claim
    answered the entity and the operation type; the catalogue has the steps."""
    row = await entities.get(session, moved.entity_id)
    entity = await entity_plain(session, row)
    kind = catalog.kinds[row.kind]
    op_type = kind.operations[moved.operation_type]
    # Every task of the entity, not only this operation's: a backup needs the database
    # task's values, a delete the files task's.
    every = await task_instances.of_entity(session, moved.entity_id)
    instances = {task.key: task for task in every}
    steps = [
        Step(i, key, catalog.tasks[instances[key].type]) for i, key in enumerate(op_type.steps)
    ]
    steps += [
        Step(len(steps) + i, key, catalog.tasks[kind.tasks[key]], undo=True)
        for i, key in enumerate(op_type.on_failure)
    ]
    tasks, secrets = task_data(catalog, box, [t for t in every if t.type in catalog.tasks])
    for key in op_type.on_failure:
        tasks.setdefault(key, {"type": kind.tasks[key], "values": {}, "outputs": {}})
    await _resolve_references(session, catalog, row.team_id, tasks)
    named = [ref for task in tasks.values() for ref in task["refs"].values()]
    secrets += await add_credentials(session, catalog, box, [entity, *named])
    # A first attempt has no lines before it; a later one numbers on after the last.
    last_seq = await runs.last_seq(session, run_id) if moved.attempt > 1 else 0
    return Claim(
        run_id=run_id,
        attempt=moved.attempt,
        first_seq=last_seq + 1,
        operation=op_type,
        steps=steps,
        entity=entity,
        tasks=tasks,
        secrets=secrets,
    )
