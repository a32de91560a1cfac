"""Every query on operations and the task instances they hold."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from app.entities.entity.models import Entity, EntityReference
from app.entities.operation.models import Operation, OperationTask
from app.errors import NotFound


def _with_graph() -> Select[Operation]:
    return select(Operation).options(
        # Joined, not a statement each: a run request reads this on every call.
        selectinload(Operation.steps).joinedload(OperationTask.task, innerjoin=True),
        joinedload(Operation.entity, innerjoin=True)
        .selectinload(Entity.references)
        .selectinload(EntityReference.target),
    )


async def get(session: AsyncSession, operation_id: uuid.UUID) -> Operation:
    query = _with_graph().where(Operation.id == operation_id)
    operation = (await session.execute(query)).scalar_one_or_none()
    if operation is None:
        raise NotFound(f"no operation with id {operation_id}")
    return operation


async def of_entity(session: AsyncSession, entity_id: uuid.UUID, type_: str) -> Operation:
    """The entity's operation of this type, loaded as ``get`` loads it."""
    query = _with_graph().where(Operation.entity_id == entity_id, Operation.type == type_)
    operation = (await session.execute(query)).scalar_one_or_none()
    if operation is None:
        raise NotFound(
            f"the entity has no {type_} operation (its graph is outdated: aegir migrate)"
        )
    return operation


async def for_entity(session: AsyncSession, entity_id: uuid.UUID) -> list[Operation]:
    query = select(Operation).where(Operation.entity_id == entity_id)
    return list((await session.execute(query)).scalars())
