"""Task values: stored form, shown form and run snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr
from pydantic_core import to_jsonable_python

from app.catalog.registry import Catalog
from app.catalog.types import TaskType
from app.errors import InvalidInput
from app.schemas import unmet
from app.security.crypto import SecretBox

MASK = "**********"


def stored_form(task_type: TaskType, model: Any, box: SecretBox) -> dict[str, Any]:
    """What the database keeps: only the fields the user set, secrets encrypted."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    for name in task_type.secret_fields() & data.keys():
        value = getattr(model, name)
        data[name] = box.seal(value.get_secret_value()) if isinstance(value, SecretStr) else None
    return data


def opened_form(task_type: TaskType, stored: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """Stored values with their secrets decrypted: for validation and for executors only."""
    opened = dict(stored)
    for name in task_type.secret_fields() & opened.keys():
        opened[name] = box.open(opened[name])
    return opened


def carried_over(task_type: TaskType, stored: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """What a new run's values start from: the task's stored values, opened, less its
    fields with no default. Those are each run's own (a migration's target platform, a
    clone's new domain): sent with every run, as the document says, never taken from the
    last one."""
    fields = task_type.fields.model_fields
    opened = opened_form(task_type, stored, box)
    return {
        name: value
        for name, value in opened.items()
        if name not in fields or not fields[name].is_required()
    }


def merged_values(
    catalog: Catalog,
    types: Mapping[str, str],
    stored: Mapping[str, dict[str, Any]],
    given: Mapping[str, dict[str, Any]],
    box: SecretBox,
) -> dict[str, Any]:
    """A run's values before validation: each task's current ones (``carried_over``), what
    was sent on top. A rule across fields is checked on what was sent (422 naming the
    field); unknown task keys stay in, for the composed model to refuse."""
    merged: dict[str, Any] = {
        key: carried_over(catalog.tasks[type_], stored.get(key, {}), box)
        for key, type_ in types.items()
    }
    for key, sent in given.items():
        if key in types and isinstance(sent, dict):
            extra = catalog.tasks[types[key]].fields.model_config.get("json_schema_extra")
            for name, why in unmet(extra, sent):
                raise InvalidInput.field(["body", "values", key, name], why, "missing")
        merged[key] = {**merged.get(key, {}), **sent}
    return merged


def snapshot_form(task_type: TaskType, model: Any) -> dict[str, Any]:
    """What a run records as sent: the fields that were set, secrets left out."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    for name in task_type.secret_fields():
        data.pop(name, None)
    return data


def shown_form(task_type: TaskType, stored: dict[str, Any]) -> dict[str, Any]:
    """Current values with defaults filled in; a secret shows only whether it is set."""
    secrets = task_type.secret_fields()
    shown: dict[str, Any] = {}
    for name, info in task_type.fields.model_fields.items():
        if name in stored:
            value = stored[name]
        elif info.is_required():
            value = None
        else:
            value = to_jsonable_python(info.get_default(call_default_factory=True))
        shown[name] = (MASK if value else None) if name in secrets else value
    return shown
