"""Every query on entities and their references."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.strategy_options import _AbstractLoad

from app.entities.entity.models import Entity, EntityReference
from app.errors import NotFound


def _with_references() -> _AbstractLoad:
    return selectinload(Entity.references).selectinload(EntityReference.target)


async def get(session: AsyncSession, entity_id: uuid.UUID, kind: str | None = None) -> Entity:
    query = select(Entity).where(Entity.id == entity_id).options(_with_references())
    entity = (await session.execute(query)).scalar_one_or_none()
    if entity is None or (kind is not None and entity.kind != kind):
        raise NotFound(f"no {kind or 'entity'} with id {entity_id}")
    return entity


async def get_many(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Entity]:
    if not ids:
        return {}
    rows = await session.execute(select(Entity).where(Entity.id.in_(ids)))
    return {entity.id: entity for entity in rows.scalars()}


async def page(
    session: AsyncSession,
    kind: str,
    name: str | None,
    limit: int,
    offset: int,
    teams: set[uuid.UUID] | None,
) -> tuple[list[Entity], int]:
    """A page of one kind's entities; ``teams`` limits them to those teams (None: all)."""
    query = select(Entity).where(Entity.kind == kind)
    if teams is not None:
        query = query.where(Entity.team_id.in_(teams))
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Entity.name.ilike(f"%{escaped}%", escape="\\"))
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.execute(
        query.options(_with_references()).order_by(Entity.name).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total


async def with_graph(session: AsyncSession, kind: str) -> list[Entity]:
    """Entities of a kind with their task instances and operations loaded."""
    query = (
        select(Entity)
        .where(Entity.kind == kind)
        .options(selectinload(Entity.tasks), selectinload(Entity.operations))
    )
    return list((await session.execute(query)).scalars())


async def name_taken(
    session: AsyncSession, kind: str, name: str, exclude: uuid.UUID | None = None
) -> bool:
    query = select(Entity.id).where(Entity.kind == kind, Entity.name == name)
    if exclude is not None:
        query = query.where(Entity.id != exclude)
    return (await session.execute(query.limit(1))).first() is not None


async def id_in_team(
    session: AsyncSession, kind: str, name: str, team_id: uuid.UUID
) -> uuid.UUID | None:
    """The entity of ``kind`` named ``name`` in that team (names are unique per kind)."""
    found: uuid.UUID | None = await session.scalar(
        select(Entity.id).where(Entity.kind == kind, Entity.name == name, Entity.team_id == team_id)
    )
    return found


class Dependent(NamedTuple):
    """An entity that references another: what a page or an answer names of it."""

    id: uuid.UUID
    kind: str
    name: str


async def dependents_by_target(
    session: AsyncSession,
    entity_ids: Sequence[uuid.UUID],
    teams: set[uuid.UUID] | None = None,
) -> dict[uuid.UUID, list[Dependent]]:
    """Who references each entity; ``teams`` limits the answer to what a user may see.

    Names only, not whole rows: a server that a fleet's sites use has thousands.
    """
    if not entity_ids:
        return {}
    query = (
        select(EntityReference.target_id, Entity.id, Entity.kind, Entity.name)
        .join(Entity, EntityReference.source_id == Entity.id)
        .where(EntityReference.target_id.in_(entity_ids))
        .order_by(Entity.kind, Entity.name)
    )
    if teams is not None:
        query = query.where(_in_teams(teams))
    found: dict[uuid.UUID, list[Dependent]] = {}
    for target_id, source_id, kind, name in await session.execute(query):
        found.setdefault(target_id, []).append(Dependent(source_id, kind, name))
    return found


async def dependent_counts(
    session: AsyncSession, entity_ids: Sequence[uuid.UUID], teams: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, int]:
    """How many entities reference each one (of those ``teams`` may see)."""
    if not entity_ids:
        return {}
    query = (
        select(EntityReference.target_id, func.count())
        .where(EntityReference.target_id.in_(entity_ids))
        .group_by(EntityReference.target_id)
    )
    if teams is not None:
        query = query.join(Entity, EntityReference.source_id == Entity.id).where(_in_teams(teams))
    return {target_id: count for target_id, count in await session.execute(query)}


def _in_teams(teams: set[uuid.UUID]) -> ColumnElement[bool]:
    """The joined entity is in one of ``teams``, written so that no index serves it.

    SQLite keeps no statistics: it takes ``team_id IN (...)`` for a few rows and starts
    the query from every entity of the team (10,000 in a fleet), where the references
    of the few entities asked about are the place to start. ``coalesce`` is the idiom
    that hides the column from the index; the team stays a filter on the rows found.
    """
    return func.coalesce(Entity.team_id, Entity.team_id).in_(teams)


async def reference_name(session: AsyncSession, entity_id: uuid.UUID, role: str) -> str | None:
    """The name of the entity it references in that role (None: no such reference)."""
    target = select(EntityReference.target_id).where(
        EntityReference.source_id == entity_id, EntityReference.role == role
    )
    name: str | None = await session.scalar(select(Entity.name).where(Entity.id.in_(target)))
    return name


async def delete_by_id(session: AsyncSession, entity_id: uuid.UUID) -> None:
    """Delete the entity; its tasks, operations, runs and references go with it (cascade)."""
    await session.execute(delete(Entity).where(Entity.id == entity_id))


async def team_of(session: AsyncSession, entity_id: uuid.UUID) -> uuid.UUID | None:
    """The team that owns the entity; ``None`` if there is no such entity."""
    found: uuid.UUID | None = await session.scalar(
        select(Entity.team_id).where(Entity.id == entity_id)
    )
    return found
