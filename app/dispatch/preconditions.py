"""What a run request must satisfy beyond its values' schema, checked before it is queued.

The entity's state (a site is deleted only once disabled), fields that name other
entities (they must exist and be visible), the name a copy will take (it must be free),
and secrets Aegir generates when they are left empty.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.registry import Catalog
from app.catalog.types import EntityKind, OperationType
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.errors import Conflict, NotFound

GENERATED_SECRET_BYTES = 18


def check_state(kind: EntityKind, op_type: OperationType, entity: Entity) -> None:
    if op_type.requires_state and entity.state not in op_type.requires_state:
        now = entity.state or "not set up yet"
        wanted = " or ".join(op_type.requires_state)
        raise Conflict(
            f"{kind.label.lower()} {entity.name} is {now}; {op_type.label.lower()} needs it "
            f"{wanted} first"
        )


def state_reason(kind: EntityKind, wanted: tuple[str, ...], state: str | None) -> str | None:
    """Why something that needs the entity in one of ``wanted`` states cannot run now, in
    words that say what to do ("Install the site first"); ``None`` when it can."""
    if not wanted or state in wanted:
        return None
    noun = kind.label.lower()
    for op in kind.operations.values():
        if op.on_success.state in wanted and (not op.requires_state or state in op.requires_state):
            return f"{op.label} the {noun} first"
    now = state or "not set up yet"
    return f"the {noun} is {now}; this needs it {' or '.join(wanted)}"


async def check_values(
    session: AsyncSession,
    catalog: Catalog,
    entity: Entity,
    op_type: OperationType,
    task_types: dict[str, str],
    validated: BaseModel,
) -> BaseModel:
    """The validated values, with generated secrets filled in. A named entity that does
    not exist is a 404, a copy's name taken or a move to where it already is a 409; each
    names the field."""
    updates: dict[str, Any] = {}
    for key in op_type.task_keys:
        task_type = catalog.tasks[task_types[key]]
        model: BaseModel = getattr(validated, key)
        for field, kind in task_type.reference_fields().items():
            name = getattr(model, field)
            if (
                name is not None
                and await entities.id_in_team(session, kind, name, entity.team_id) is None
            ):
                # A missing entity is a 404, like a missing reference; the field is named.
                raise NotFound(
                    f"values.{key}.{field}: there is no {kind} named {name!r} in this "
                    f"{entity.kind}'s team"
                )
        fill = {
            name: SecretStr(secrets.token_urlsafe(GENERATED_SECRET_BYTES))
            for name in task_type.generated_secrets()
            if getattr(model, name) is None
        }
        if fill:
            updates[key] = model.model_copy(update=fill)
    await _check_effects(session, entity, op_type, validated)
    return validated.model_copy(update=updates) if updates else validated


async def _check_effects(
    session: AsyncSession, entity: Entity, op_type: OperationType, validated: BaseModel
) -> None:
    effects = op_type.on_success
    if effects.repoint is not None:
        role, key, field = effects.repoint
        target = getattr(getattr(validated, key), field)
        current = await entities.reference_name(session, entity.id, role)
        if target == current:
            # Asking for what already is: a conflict with the entity's state, not bad input.
            raise Conflict(f"values.{key}.{field}: the {role} is already {target!r}")
    if effects.copy_to is not None:
        key, field = effects.copy_to
        name = getattr(getattr(validated, key), field)
        if await entities.name_taken(session, entity.kind, name):
            raise Conflict(f"values.{key}.{field}: a {entity.kind} named {name!r} already exists")
