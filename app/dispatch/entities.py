"""Create, change and delete entities together with their task and operation graph."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind
from app.dispatch.audit import record
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity, EntityReference
from app.entities.entity.schemas import EntityUpdate
from app.entities.operation.models import Operation, OperationTask
from app.entities.run import repository as runs
from app.entities.run.states import FINAL
from app.entities.task.models import TaskInstance
from app.entities.team import repository as teams
from app.entities.team.models import Role
from app.errors import Conflict, InvalidInput, NotFound
from app.security.principal import Principal


@cache
def _name_adapter(kind: EntityKind) -> TypeAdapter[Any]:
    return TypeAdapter(kind.name_type)


def missing_graph(
    kind: EntityKind, tasks: dict[str, TaskInstance], operation_types: set[str]
) -> tuple[list[TaskInstance], list[Operation]]:
    """The task instances and operations the kind has and the entity lacks.

    One task instance per task key; each operation points at them in order, so a key
    used by two operations is one row that both read and write.
    """
    new_tasks = [
        TaskInstance(key=key, type=type_name, values={}, outputs={})
        for key, type_name in kind.tasks.items()
        if key not in tasks
    ]
    every_task = {**tasks, **{task.key: task for task in new_tasks}}
    new_operations = [
        Operation(
            type=op.name,
            steps=[
                OperationTask(position=i, task=every_task[key], runs=key in op.steps)
                for i, key in enumerate(op.task_keys)
            ],
        )
        for op in kind.operations.values()
        if op.name not in operation_types
    ]
    return new_tasks, new_operations


async def sync_graphs(session: AsyncSession, catalog: Catalog) -> int:
    """Give existing entities the tasks and operations a newly installed plugin adds."""
    added = 0
    for kind in catalog.kinds.values():
        for entity in await entities.with_graph(session, kind.name):
            tasks = {task.key: task for task in entity.tasks}
            types = {operation.type for operation in entity.operations}
            new_tasks, new_operations = missing_graph(kind, tasks, types)
            entity.tasks.extend(new_tasks)
            entity.operations.extend(new_operations)
            added += len(new_operations)
    await session.flush()
    return added


async def create(
    session: AsyncSession, principal: Principal, kind: EntityKind, body: BaseModel
) -> Entity:
    data = body.model_dump(mode="json")
    _stored_form(kind, data["fields"])
    team_id = await _team_for(session, principal, data["team_id"])
    await _check_name_free(session, kind, data["name"])
    references = await _resolve_references(session, principal, kind, data["references"])
    entity = Entity(kind=kind.name, name=data["name"], team_id=team_id, attributes=data["fields"])
    entity.references = [EntityReference(role=r, target_id=t) for r, t in references.items()]
    entity.tasks, entity.operations = missing_graph(kind, {}, set())
    session.add(entity)
    await _flush_named(session, kind, entity.name)
    record(session, principal, "entity.created", target_kind=kind.name, target_id=entity.id,
           team_id=team_id, name=entity.name)  # fmt: skip
    return await entities.get(session, entity.id)


async def _team_for(session: AsyncSession, principal: Principal, wanted: str | None) -> uuid.UUID:
    """The team asked for (where the user is admin), or the only one they administer."""
    if wanted is not None:
        team_id = uuid.UUID(wanted)
        if not principal.can(team_id, Role.admin) or await teams.get(session, team_id) is None:
            raise NotFound(f"team_id: no team {team_id} that you administer")
        return team_id
    mine = [team for team, role in principal.roles.items() if role == Role.admin]
    if len(mine) == 1:
        return mine[0]
    reason = "you administer no team" if not mine else "you administer several teams"
    raise InvalidInput.field(["body", "team_id"], f"say which team owns it: {reason}")


async def change(
    session: AsyncSession,
    principal: Principal,
    kind: EntityKind,
    entity: Entity,
    body: EntityUpdate,
) -> Entity:
    """``entity``: as ``entities.get`` loads it, which the routes' access type has done."""
    entity_id = entity.id  # kept: the entity is expired before it is read again
    principal.require(entity.team_id, Role.admin, f"{kind.name} with id {entity_id}")
    if body.name is not None:
        name = _validate(_name_adapter(kind), body.name, ["body", "name"])
        await _check_name_free(session, kind, name, exclude=entity.id)
        entity.name = name
    if body.fields is not None:
        merged = {**entity.attributes, **body.fields}
        fields = _validate(TypeAdapter(kind.fields), merged, ["body", "fields"])
        entity.attributes = _stored_form(kind, fields.model_dump(mode="json"))
    if body.references:
        wanted = {str(role): str(target) for role, target in body.references.items()}
        await _replace_references(session, principal, kind, entity, wanted)
    if body.team_id is not None and body.team_id != entity.team_id:
        # Admin of the team it leaves (above) and of the one it joins (here).
        moved_from, entity.team_id = (
            entity.team_id,
            await _team_for(session, principal, str(body.team_id)),
        )
        record(session, principal, "entity.moved", target_kind=kind.name, target_id=entity.id,
               team_id=entity.team_id, from_team=str(moved_from))  # fmt: skip
    await _flush_named(session, kind, entity.name)
    changed = ", ".join(key for key, value in body.model_dump().items() if value is not None)
    record(session, principal, "entity.updated", target_kind=kind.name, target_id=entity.id,
           team_id=entity.team_id, changed=changed)  # fmt: skip
    session.expire(entity)
    return await entities.get(session, entity_id)


async def remove(
    session: AsyncSession, principal: Principal, kind: EntityKind, entity: Entity
) -> None:
    principal.require(entity.team_id, Role.admin, f"{kind.name} with id {entity.id}")
    users = (await entities.dependents_by_target(session, [entity.id])).get(entity.id, [])
    if users:
        names = ", ".join(f"{user.kind} {user.name}" for user in users)
        raise Conflict(
            f"{kind.name} {entity.name} is used by {names}: change or delete those first"
        )
    latest = (await runs.latest_by_entity(session, [entity.id])).get(entity.id)
    if latest is not None and latest.status not in FINAL:
        raise Conflict(f"{kind.name} {entity.name} has a run {latest.status}: wait or cancel it")
    await entities.delete_by_id(session, entity.id)
    record(session, principal, "entity.deleted", target_kind=kind.name, target_id=entity.id,
           team_id=entity.team_id, name=entity.name)  # fmt: skip


def _stored_form(kind: EntityKind, stored: dict[str, Any]) -> dict[str, Any]:
    """Fields as they will be stored must read back: a value valid as given can outgrow its
    limit once normalised (a URL of 2,083 characters gains a "/"), and an entity whose
    fields no longer read back would break every page that shows it."""
    _validate(TypeAdapter(kind.fields), stored, ["body", "fields"])
    return stored


def _validate(adapter: TypeAdapter[Any], value: Any, loc: list[str | int]) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise InvalidInput.from_validation(error, loc) from None


async def _flush_named(session: AsyncSession, kind: EntityKind, name: str) -> None:
    """Flush; a name taken by a concurrent request since our check is a 409 too."""
    try:
        await session.flush()
    except IntegrityError as error:
        if "uq_entities_kind_name" in str(error.orig) or "entities.kind, entities.name" in str(
            error.orig
        ):
            raise Conflict(f"a {kind.name} named {name} already exists") from None
        raise


async def _check_name_free(
    session: AsyncSession, kind: EntityKind, name: str, exclude: uuid.UUID | None = None
) -> None:
    if await entities.name_taken(session, kind.name, name, exclude):
        raise Conflict(f"a {kind.name} named {name} already exists")


async def _resolve_references(
    session: AsyncSession, principal: Principal, kind: EntityKind, wanted: dict[str, str | None]
) -> dict[str, uuid.UUID]:
    ids = {role: uuid.UUID(value) for role, value in wanted.items() if value is not None}
    found = await entities.get_many(session, list(ids.values()))
    for role, target_id in ids.items():
        expected = kind.references[role].kind
        target = found.get(target_id)
        # Like a path's id: 404, whether it does not exist, is another team's, or is of
        # another kind (it is no such entity that you can see).
        if target is None or not principal.can(target.team_id, Role.viewer):
            raise NotFound(f"references.{role}: no {expected} with id {target_id}")
        if target.kind != expected:
            raise NotFound(
                f"references.{role}: no {expected} with id {target_id} (it is a {target.kind})"
            )
    return ids


async def _replace_references(
    session: AsyncSession,
    principal: Principal,
    kind: EntityKind,
    entity: Entity,
    wanted: dict[str, str],
) -> None:
    for role in wanted:
        if role not in kind.references:
            raise InvalidInput.field(["body", "references", role], f"{kind.name} has no {role}")
    resolved = await _resolve_references(session, principal, kind, dict(wanted))
    current = {ref.role: ref for ref in entity.references}
    for role, target_id in resolved.items():
        if role in current:
            current[role].target_id = target_id
        else:
            entity.references.append(EntityReference(role=role, target_id=target_id))
