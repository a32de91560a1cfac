"""Read models assembled from rows: what the API returns and the pages show."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind
from app.dispatch.task_values import shown_form
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.entity.repository import Dependent
from app.entities.entity.schemas import EntityRef, read_model
from app.entities.operation import repository as operations
from app.entities.operation.models import Operation
from app.entities.operation.schemas import OperationRead, OperationSummary
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.schemas import RunSummary
from app.entities.task.schemas import TaskInstanceRead
from app.entities.team import repository as teams
from app.entities.team.schemas import MemberRead, TeamRead
from app.entities.user import repository as users
from app.entities.user.schemas import Me, TeamRole, UserRead
from app.security.principal import Principal


def _ref(entity: Entity | Dependent) -> EntityRef:
    return EntityRef(id=entity.id, kind=entity.kind, name=entity.name)


def _summary(run: Run | None) -> RunSummary | None:
    return RunSummary.model_validate(run) if run is not None else None


async def entity_list(
    session: AsyncSession, principal: Principal, kind: EntityKind, rows: list[Entity]
) -> list[dict[str, Any]]:
    ids = [row.id for row in rows]
    latest = await runs.latest_by_entity(session, ids)
    users = await entities.dependents_by_target(session, ids, principal.visible_teams)
    return [_entity(kind, row, latest.get(row.id), users.get(row.id, [])) for row in rows]


async def entity_rows(
    session: AsyncSession, principal: Principal, kind: EntityKind, rows: list[Entity]
) -> list[dict[str, Any]]:
    """What a list page shows of each entity: as ``entity_list``, with how many use it
    (``used_by``) instead of which, as a server that a fleet's sites use has thousands."""
    ids = [row.id for row in rows]
    latest = await runs.latest_by_entity(session, ids)
    counts = await entities.dependent_counts(session, ids, principal.visible_teams)
    return [
        {**_entity(kind, row, latest.get(row.id), []), "used_by": counts.get(row.id, 0)}
        for row in rows
    ]


def _entity(
    kind: EntityKind, row: Entity, latest: Run | None, users: list[Dependent]
) -> dict[str, Any]:
    refs = {ref.role: _ref(ref.target) for ref in row.references if ref.role in kind.references}
    return {
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "team_id": row.team_id,
        "state": row.state,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "fields": row.attributes,
        "references": refs,
        "latest_run": _summary(latest),
        "referenced_by": [_ref(user) for user in users],
    }


async def entity_detail(
    session: AsyncSession, principal: Principal, kind: EntityKind, row: Entity
) -> Any:
    [data] = await entity_list(session, principal, kind, [row])
    ops = await operations.for_entity(session, row.id)
    data["operations"] = await operation_summaries(session, kind, ops)
    return read_model(kind, detail=True).model_validate(data)


async def operation_summaries(
    session: AsyncSession, kind: EntityKind, ops: list[Operation]
) -> list[OperationSummary]:
    """In the order the kind lists its operations; ones it no longer has come last."""
    latest = await runs.latest_by_operation(session, [op.id for op in ops])
    order = {name: i for i, name in enumerate(kind.operations)}
    ops = sorted(ops, key=lambda op: (order.get(op.type, len(order)), op.type))
    return [_operation_summary(op, latest.get(op.id), kind) for op in ops]


def _operation_summary(
    op: Operation, latest: Run | None, kind: EntityKind | None
) -> OperationSummary:
    op_type = kind.operations.get(op.type) if kind else None
    return OperationSummary(
        id=op.id,
        entity_id=op.entity_id,
        type=op.type,
        label=op_type.label if op_type else op.type,
        destructive=op_type.destructive if op_type else False,
        latest_run=_summary(latest),
    )


async def operation_detail(session: AsyncSession, catalog: Catalog, op: Operation) -> OperationRead:
    kind = catalog.kinds.get(op.entity.kind)
    latest = (await runs.latest_by_operation(session, [op.id])).get(op.id)
    summary = _operation_summary(op, latest, kind)
    tasks = []
    for step in op.steps:
        task_type = catalog.tasks.get(step.task.type)
        tasks.append(
            TaskInstanceRead(
                id=step.task.id,
                key=step.task.key,
                type=step.task.type,
                label=task_type.label if task_type else step.task.type,
                runs=step.runs,
                values=shown_form(task_type, step.task.values) if task_type else {},
                outputs=step.task.outputs,
            )
        )
    return OperationRead(
        **summary.model_dump(),
        entity_kind=op.entity.kind,
        entity_name=op.entity.name,
        tasks=tasks,
    )


async def me(session: AsyncSession, principal: Principal) -> Me:
    """The signed-in user, with their role in each of their teams."""
    user = await users.get_one(session, principal.user_id)
    rows = await teams.teams_of(session, user.id)
    mine = [TeamRole(team_id=team_id, team=name, role=role) for team_id, name, role in rows]
    return Me(**UserRead.model_validate(user).model_dump(), teams=mine)


async def team_list(session: AsyncSession, principal: Principal) -> list[TeamRead]:
    """The teams this user may see, each with its members."""
    found = await teams.listed(session, principal.visible_teams)
    members = await teams.members_by_team(session, [team.id for team in found])
    return [
        TeamRead(
            id=team.id,
            name=team.name,
            created_at=team.created_at,
            members=[
                MemberRead(user_id=user_id, username=username, role=role)
                for user_id, username, role in members.get(team.id, [])
            ],
        )
        for team in found
    ]
