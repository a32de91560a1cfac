"""What a succeeded run changes in the entity graph, in the transaction that records it.

Called by whoever records the success first (the worker, or the relay from the exit
event), so it happens exactly once: the state a site is left in, the platform a
migrated site now runs on, the site a clone created.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind, OperationType
from app.dispatch.audit import record
from app.dispatch.entities import missing_graph
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity, EntityReference
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.task import repository as task_instances
from app.entities.task.models import TaskInstance


def has_effects(op_type: OperationType) -> bool:
    """Whether a success of the operation changes anything beyond the run itself."""
    effects = op_type.on_success
    return not (
        effects.state is None
        and effects.repoint is None
        and effects.repoint_output is None
        and effects.copy_to is None
    )


async def apply_on_success(session: AsyncSession, catalog: Catalog, run_id: uuid.UUID) -> None:
    run = await runs.get(session, run_id)
    entity = await entities.get(session, run.entity_id)
    kind = catalog.kinds.get(entity.kind)
    op_type = kind.operations.get(run.operation_type) if kind else None
    if kind is None or op_type is None:
        return
    if not has_effects(op_type):
        return
    effects = op_type.on_success
    tasks = {task.key: task for task in await task_instances.of_entity(session, entity.id)}
    if effects.state is not None:
        entity.state = effects.state
    if effects.repoint is not None:
        role, key, field = effects.repoint
        name = tasks[key].values.get(field)
        target = (
            None
            if name is None
            else await entities.id_in_team(
                session, kind.references[role].kind, str(name), entity.team_id
            )
        )
        if target is not None:
            for reference in entity.references:
                if reference.role == role:
                    reference.target_id = target
            record(session, run.requested_by or "aegir", "entity.updated", target_kind=entity.kind,
                   target_id=entity.id, team_id=entity.team_id,
                   changed=f"references.{role}", run=str(run.id))  # fmt: skip
    if effects.repoint_output is not None:
        await _repoint_output(session, kind, entity, tasks, effects.repoint_output, run)
    if effects.copy_to is not None:
        key, field = effects.copy_to
        name = tasks[key].values.get(field)
        if isinstance(name, str):
            await _copy(session, catalog, entity, tasks, name, effects.fresh, effects.carry, run)


async def _copy(
    session: AsyncSession,
    catalog: Catalog,
    source: Entity,
    tasks: dict[str, TaskInstance],
    name: str,
    fresh: tuple[str, ...],
    carry: tuple[tuple[str, str], ...],
    run: Run,
) -> None:
    kind = catalog.kinds[source.kind]
    copy = Entity(
        kind=source.kind,
        name=name,
        team_id=source.team_id,
        attributes=dict(source.attributes),
        state=source.state,
    )
    copy.references = [
        EntityReference(role=r.role, target_id=r.target_id) for r in source.references
    ]
    copy.tasks, copy.operations = missing_graph(kind, {}, set())
    values: dict[str, dict[str, Any]] = {
        key: dict(task.values) for key, task in tasks.items() if key not in fresh
    }
    for to, frm in carry:
        to_key, to_field = to.split(".")
        from_key, from_field = frm.split(".")
        if from_field in tasks[from_key].values:
            values.setdefault(to_key, {})[to_field] = tasks[from_key].values[from_field]
    for task in copy.tasks:
        task.values = values.get(task.key, {})
    session.add(copy)
    await session.flush()
    record(session, run.requested_by or "aegir", "entity.created", target_kind=copy.kind,
           target_id=copy.id, team_id=copy.team_id, name=name, copy_of=source.name,
           run=str(run.id))  # fmt: skip


async def _repoint_output(
    session: AsyncSession,
    kind: EntityKind,
    entity: Entity,
    tasks: dict[str, TaskInstance],
    repoint: tuple[str, str, str],
    run: Run,
) -> None:
    """The reference ``role`` now names the entity a task's output names (what the run
    applied, known only once it ran: a rollback's release)."""
    role, key, field = repoint
    name = tasks[key].outputs.get(field) if key in tasks else None
    if not isinstance(name, str):
        return
    target = await entities.id_in_team(session, kind.references[role].kind, name, entity.team_id)
    if target is None:
        return
    for reference in entity.references:
        if reference.role == role:
            reference.target_id = target
    record(session, run.requested_by or "aegir", "entity.updated", target_kind=entity.kind,
           target_id=entity.id, team_id=entity.team_id, changed=f"references.{role}",
           run=str(run.id))  # fmt: skip
