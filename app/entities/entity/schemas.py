"""Entity schemas, generated per kind from the kind's own fields and references."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.catalog.types import EntityKind
from app.entities.operation.schemas import OperationSummary
from app.entities.run.schemas import RunSummary
from app.schemas import Schema


class EntityRef(Schema):
    id: uuid.UUID
    kind: str
    name: str


class EntityBase(Schema):
    id: uuid.UUID
    kind: str
    name: str
    team_id: uuid.UUID
    state: str | None = Field(
        default=None, description="What its operations made it: enabled, disabled, deleted."
    )
    created_at: datetime
    updated_at: datetime
    latest_run: RunSummary | None = None
    referenced_by: list[EntityRef] = Field(default=[], description="Entities that use this one.")


class EntityDetail(EntityBase):
    operations: list[OperationSummary] = []


class EntityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="A new name.")
    fields: dict[str, Any] | None = Field(
        default=None, description="Fields to change; the others keep their values."
    )
    references: dict[str, uuid.UUID] | None = Field(
        default=None, description="References to change, by role."
    )
    team_id: uuid.UUID | None = Field(
        default=None,
        description="Move it to this team: you must administer both teams.",
    )


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _has_required(model: type[BaseModel]) -> bool:
    return any(info.is_required() for info in model.model_fields.values())


@cache
def references_read_model(kind: EntityKind) -> type[BaseModel]:
    spec: dict[str, Any] = {
        role: (EntityRef | None, Field(default=None, description=ref.description))
        for role, ref in kind.references.items()
    }
    model: type[BaseModel] = create_model(f"{camel(kind.name)}References", **spec)
    return model


@cache
def read_model(kind: EntityKind, *, detail: bool) -> type[BaseModel]:
    base = EntityDetail if detail else EntityBase
    model: type[BaseModel] = create_model(
        f"{camel(kind.name)}{'Detail' if detail else ''}",
        __base__=base,
        fields=(kind.fields, ...),
        references=(references_read_model(kind), ...),
    )
    return model


@cache
def create_model_for(kind: EntityKind) -> type[BaseModel]:
    refs: dict[str, Any] = {
        role: (
            uuid.UUID if ref.required else uuid.UUID | None,
            Field(
                default=... if ref.required else None,
                description=f"Id of the {ref.kind}. {ref.description}".strip(),
            ),
        )
        for role, ref in kind.references.items()
    }
    refs_model: type[BaseModel] = create_model(
        f"{camel(kind.name)}ReferencesCreate", __config__=ConfigDict(extra="forbid"), **refs
    )
    fields_spec: Any = (
        (kind.fields, ...)
        if _has_required(kind.fields)
        else (kind.fields, Field(default_factory=kind.fields))
    )
    refs_spec: Any = (refs_model, ...) if refs else (refs_model, Field(default_factory=refs_model))
    model: type[BaseModel] = create_model(
        f"{camel(kind.name)}Create",
        __config__=ConfigDict(extra="forbid"),
        name=(kind.name_type, ...),
        team_id=(
            uuid.UUID | None,
            Field(default=None, description="Owning team; may be left out if you have one."),
        ),
        fields=fields_spec,
        references=refs_spec,
    )
    return model
