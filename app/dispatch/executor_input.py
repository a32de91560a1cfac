"""What executors receive: the claim's plain data (JSON), then typed by the catalogue.

A worker's claim holds the entity graph and the task values as JSON (``entity_data``,
``task_data``), to merge outputs into between steps; ``typed_input`` validates them
into the catalogue's models just before each task runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.inputs import EntityInput, InvalidInput, TaskInput
from app.catalog.registry import Catalog, CatalogError
from app.catalog.types import TaskFields, TaskType
from app.dispatch.task_values import opened_form
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.task import repository as task_instances
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
    return await entity_plain(session, await entities.get(session, entity_id), depth)


async def entity_plain(session: AsyncSession, entity: Entity, depth: int = 3) -> dict[str, Any]:
    """``entity_data`` of an entity read already (with its references)."""
    references: dict[str, Any] = {}
    for ref in entity.references:
        if depth > 1:
            references[ref.role] = await entity_data(session, ref.target_id, depth - 1)
        else:
            references[ref.role] = plain(ref.target, {})
    return plain(entity, references)


async def add_credentials(
    session: AsyncSession, catalog: Catalog, box: SecretBox, graphs: Iterable[dict[str, Any]]
) -> tuple[str, ...]:
    """Give each entity of these plain graphs whose kind keeps credentials (a cluster's
    token) that task's values, in clear, as ``credentials``; answer the secrets to mask.

    They live in a task because task values are encrypted at rest and entity fields are
    not; an environment's run needs its cluster's, so they follow the references.
    """
    secrets: list[str] = []
    for graph in graphs:
        kind = catalog.kinds.get(graph["kind"])
        if kind is not None and kind.credentials is not None:
            task = await task_instances.by_key(session, uuid.UUID(graph["id"]), kind.credentials)
            if task is not None and task.type in catalog.tasks:
                values, found = task_data(catalog, box, [task])
                graph["credentials"] = values[task.key]["values"]
                secrets += found
        secrets += await add_credentials(session, catalog, box, graph["references"].values())
    return tuple(secrets)


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


@dataclass(frozen=True)
class TypedInput:
    """The running task's typed input: its entity, every task of it, and its own values."""

    entity: EntityInput
    tasks: dict[str, TaskInput]
    values: TaskFields


def typed_input(
    catalog: Catalog,
    entity: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    key: str,
) -> TypedInput:
    """The claim's ``entity_data`` and ``task_data`` validated into the catalogue's models.

    ``InvalidInput`` when the entity or the running task's values no longer fit their
    models; another task's values that do not fit are ``None`` (a task never run).
    """
    task_type = catalog.tasks[tasks[key]["type"]]
    try:
        values = task_type.fields.model_validate(tasks[key].get("values", {}))
    except ValidationError as error:
        raise InvalidInput(f"the values of task {key} are not valid: {_first(error)}") from None
    typed = {name: _task_input(catalog, task) for name, task in tasks.items()}
    return TypedInput(_entity_input(catalog, entity), typed, values)


def _entity_input(catalog: Catalog, plain: Mapping[str, Any]) -> EntityInput:
    try:
        kind = catalog.kind(plain["kind"])
    except CatalogError as error:
        raise InvalidInput(str(error)) from None
    try:
        fields = kind.fields.model_validate(plain["fields"])
    except ValidationError as error:
        name = f"{kind.name} {plain['name']}"
        raise InvalidInput(f"the fields of {name} are not valid: {_first(error)}") from None
    credentials = None
    if kind.credentials is not None and "credentials" in plain:
        model = catalog.tasks[kind.tasks[kind.credentials]].fields
        credentials = _valid(model, plain["credentials"])
    return EntityInput(
        id=plain["id"],
        kind=kind,
        name=plain["name"],
        url=plain["url"],
        state=plain["state"],
        fields=fields,
        references={role: _entity_input(catalog, ref) for role, ref in plain["references"].items()},
        credentials=credentials,
    )


def _task_input(catalog: Catalog, plain: Mapping[str, Any]) -> TaskInput:
    task_type = catalog.tasks[plain["type"]]
    return TaskInput(
        type=task_type.name,
        values=_valid(task_type.fields, plain.get("values", {})),
        outputs=_valid(task_type.outputs, plain.get("outputs", {}), strict=False),
        refs={name: _entity_input(catalog, ref) for name, ref in plain.get("refs", {}).items()},
    )


def _valid(
    model: type[TaskFields], data: Mapping[str, Any], *, strict: bool | None = None
) -> TaskFields | None:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError:
        return None


def _first(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
