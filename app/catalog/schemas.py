"""How the catalogue describes itself to the API and the dashboard."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, TypeAdapter

from app.catalog.registry import Catalog
from app.catalog.types import ActionType, EntityKind, OperationType, TaskType


class TaskTypeRead(BaseModel):
    name: str
    label: str
    description: str
    executor: str
    safe_to_rerun: bool
    timeout_seconds: float
    fields_schema: dict[str, Any]
    outputs_schema: dict[str, Any]


class OperationTypeRead(BaseModel):
    name: str
    label: str
    description: str
    destructive: bool
    steps: list[str]
    reads: list[str]
    undo: list[str] = Field(description="Steps run after a failed or cancelled step.")
    requires_state: list[str] = Field(
        description="The entity states it may run in; empty: any state."
    )
    sets_state: str | None = Field(description="The entity's state after it succeeds.")
    values_schema: dict[str, Any]


class ActionTypeRead(BaseModel):
    name: str
    label: str
    description: str
    task: str
    timeout_seconds: float
    result_schema: dict[str, Any]


class ReferenceRead(BaseModel):
    kind: str
    required: bool
    description: str


class EntityKindRead(BaseModel):
    name: str
    label: str
    plural: str
    description: str
    name_schema: dict[str, Any]
    fields_schema: dict[str, Any]
    references: dict[str, ReferenceRead]
    tasks: dict[str, str]
    operations: list[OperationTypeRead]
    actions: list[ActionTypeRead]


class CatalogRead(BaseModel):
    tasks: list[TaskTypeRead]
    entity_kinds: list[EntityKindRead]
    plugins: list[str]


def _task(task: TaskType) -> TaskTypeRead:
    return TaskTypeRead(
        name=task.name,
        label=task.label,
        description=task.description,
        executor=task.executor.describe(task.name),
        safe_to_rerun=task.safe_to_rerun,
        timeout_seconds=task.timeout.total_seconds(),
        fields_schema=task.fields.model_json_schema(),
        outputs_schema=task.outputs.model_json_schema(),
    )


def _operation(catalog: Catalog, kind: EntityKind, op: OperationType) -> OperationTypeRead:
    return OperationTypeRead(
        name=op.name,
        label=op.label,
        description=op.description,
        destructive=op.destructive,
        steps=list(op.steps),
        reads=list(op.reads),
        undo=list(op.on_failure),
        requires_state=list(op.requires_state),
        sets_state=op.on_success.state,
        values_schema=catalog.values_model(kind.name, op.name).model_json_schema(),
    )


def _action(action: ActionType) -> ActionTypeRead:
    return ActionTypeRead(
        name=action.name,
        label=action.label,
        description=action.description,
        task=action.task,
        timeout_seconds=action.timeout.total_seconds(),
        result_schema=action.result.model_json_schema(),
    )


def _kind(catalog: Catalog, kind: EntityKind) -> EntityKindRead:
    return EntityKindRead(
        name=kind.name,
        label=kind.label,
        plural=kind.plural,
        description=kind.description,
        name_schema=TypeAdapter(kind.name_type).json_schema(),
        fields_schema=kind.fields.model_json_schema(),
        references={
            role: ReferenceRead(kind=ref.kind, required=ref.required, description=ref.description)
            for role, ref in kind.references.items()
        },
        tasks=dict(kind.tasks),
        operations=[_operation(catalog, kind, op) for op in kind.operations.values()],
        actions=[_action(action) for action in kind.actions.values()],
    )


def describe_catalog(catalog: Catalog) -> CatalogRead:
    return CatalogRead(
        tasks=[_task(task) for task in catalog.tasks.values()],
        entity_kinds=[_kind(catalog, kind) for kind in catalog.kinds.values()],
        plugins=list(catalog.plugins),
    )
