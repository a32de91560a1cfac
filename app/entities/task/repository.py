"""Every query on task instances."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.task.models import TaskInstance


async def get(session: AsyncSession, task_id: uuid.UUID) -> TaskInstance:
    return await session.get_one(TaskInstance, task_id)


async def by_key(session: AsyncSession, entity_id: uuid.UUID, key: str) -> TaskInstance | None:
    """The entity's task instance for that key (one per key)."""
    query = select(TaskInstance).where(TaskInstance.entity_id == entity_id, TaskInstance.key == key)
    task: TaskInstance | None = await session.scalar(query)
    return task


async def of_entity(session: AsyncSession, entity_id: uuid.UUID) -> list[TaskInstance]:
    """Every task instance of the entity, whichever operations use them."""
    query = select(TaskInstance).where(TaskInstance.entity_id == entity_id)
    return list(await session.scalars(query))
