"""Entities as plain data, the only form executors ever see."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.catalog.registry import Catalog
from app.catalog.types import TaskType
from app.dispatch.task_values import opened_form
from app.entities.entity.models import Entity, EntityReference
from app.entities.task.models import TaskInstance
from app.security.crypto import SecretBox


def task_data(
    catalog: Catalog, box: SecretBox, instances: list[TaskInstance]
) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]]:
    """Tasks by key with their values (secrets decrypted), and the secrets to mask."""
    tasks: dict[str, dict[str, Any]] = {}
    secrets: list[str] = []
    for task in instances:
        task_type = catalog.tasks[task.type]
        values = _with_defaults(task_type, opened_form(task_type, task.values, box))
        tasks[task.key] = {"type": task.type, "values": values, "outputs": dict(task.outputs)}
        secrets += [str(values[name]) for name in task_type.secret_fields() if values.get(name)]
    return tasks, tuple(secrets)


def _with_defaults(task_type: TaskType, opened: dict[str, Any]) -> dict[str, Any]:
    """Every field, the unset ones at their defaults; secrets in clear."""
    try:
        model = task_type.fields.model_validate(opened)
    except ValidationError:
        return opened  # stored before the task type changed: as it is
    values: dict[str, Any] = model.model_dump(mode="json")
    for name in task_type.secret_fields():
        values[name] = opened.get(name)
    return values


async def entity_data(
    session: AsyncSession, entity_id: uuid.UUID, depth: int = 3
) -> dict[str, Any]:
    """The entity and what it references (site -> platform -> server), recursively."""
    query = (
        select(Entity)
        .where(Entity.id == entity_id)
        .options(selectinload(Entity.references).selectinload(EntityReference.target))
    )
    entity = (await session.execute(query)).scalar_one()
    references: dict[str, Any] = {}
    for ref in entity.references:
        if depth > 1:
            references[ref.role] = await entity_data(session, ref.target_id, depth - 1)
        else:
            references[ref.role] = plain(ref.target, {})
    return plain(entity, references)


def plain(entity: Entity, references: dict[str, Any]) -> dict[str, Any]:
    scheme = "https" if entity.attributes.get("https") else "http"
    return {
        "id": str(entity.id),
        "kind": entity.kind,
        "name": entity.name,
        "url": f"{scheme}://{entity.name}",
        "state": entity.state,
        "fields": dict(entity.attributes),
        "references": references,
    }
