"""Lookups plus permission checks, as dependency types the API and the pages share.

A route says what it needs in its signature: ``run: RunView`` is the run of the path's
``run_id``, which the one asking may see. Not visible to them: 404, as if it did not
exist. Visible, with too low a role in its team: 403.

Who is asking comes from the router's gate, which runs before these: the API routers'
``Authenticated`` (a bearer token, or a session plus CSRF) or the pages' ``SignedIn``.
"""

# No ``from __future__ import annotations``: FastAPI reads these closures' annotations.

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import CatalogDep, SessionDep
from app.catalog.types import EntityKind
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.operation import repository as operations
from app.entities.operation.models import Operation
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.team.models import Role
from app.errors import NotFound, Unauthorized
from app.security.principal import Principal


async def visible_entity(
    session: AsyncSession, principal: Principal, kind: EntityKind, entity_id: uuid.UUID, role: Role
) -> Entity:
    entity = await entities.get(session, entity_id, kind.name)
    principal.require(entity.team_id, role, f"{kind.name} with id {entity_id}")
    return entity


async def visible_run(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID, role: Role
) -> Run:
    run = await runs.get(session, run_id)
    principal.require(await runs.team_of(session, run), role, f"run with id {run_id}")
    return run


async def visible_operation(
    session: AsyncSession, principal: Principal, operation_id: uuid.UUID, role: Role
) -> Operation:
    operation = await operations.get(session, operation_id)
    principal.require(operation.entity.team_id, role, f"operation with id {operation_id}")
    return operation


async def _signed_in(request: Request) -> Principal:
    """Who the router's gate let in."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # a router without a gate: refuse, never guess
        raise Unauthorized("sign in at /login, or send Authorization: Bearer <token>")
    return principal


Asking = Annotated[Principal, Depends(_signed_in)]


async def _site_admin(principal: Asking) -> Principal:
    principal.require_admin()
    return principal


SiteAdmin = Annotated[Principal, Depends(_site_admin)]
"""The one asking, who must be a site admin (403 otherwise): users, teams, the audit log."""


async def _kind_in_path(catalog: CatalogDep, plural: str) -> EntityKind:
    kind = catalog.by_plural(plural)
    if kind is None:
        raise NotFound(f"there is no page {plural}")
    return kind


PathKind = Annotated[EntityKind, Depends(_kind_in_path)]
"""The entity kind whose plural the path's ``{plural}`` is (the pages serve every kind)."""


def _this(kind: EntityKind) -> Callable[[], Awaitable[EntityKind]]:
    async def this_kind() -> EntityKind:
        return kind

    return this_kind


def entity_access(role: Role, kind: EntityKind | None = None) -> Any:
    """The entity of the path's ``entity_id``, of ``kind`` (without one: of the path's
    ``{plural}``), on which the one asking holds ``role``. The API's routers are one per
    kind; the pages serve every kind from one route."""

    async def entity(
        session: SessionDep,
        principal: Asking,
        of: Annotated[EntityKind, Depends(_kind_in_path if kind is None else _this(kind))],
        entity_id: uuid.UUID,
    ) -> Entity:
        return await visible_entity(session, principal, of, entity_id, role)

    return Depends(entity)


def _run_access(role: Role) -> Any:
    async def run(session: SessionDep, principal: Asking, run_id: uuid.UUID) -> Run:
        return await visible_run(session, principal, run_id, role)

    return Depends(run)


def _operation_access(role: Role) -> Any:
    async def operation(
        session: SessionDep, principal: Asking, operation_id: uuid.UUID
    ) -> Operation:
        return await visible_operation(session, principal, operation_id, role)

    return Depends(operation)


EntityView = Annotated[Entity, entity_access(Role.viewer)]
EntityOperate = Annotated[Entity, entity_access(Role.operator)]
EntityAdmin = Annotated[Entity, entity_access(Role.admin)]
RunView = Annotated[Run, _run_access(Role.viewer)]
RunOperate = Annotated[Run, _run_access(Role.operator)]
OperationView = Annotated[Operation, _operation_access(Role.viewer)]
OperationRun = Annotated[Operation, _operation_access(Role.operator)]
