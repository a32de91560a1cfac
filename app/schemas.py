"""Schema bases shared by every package."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict

T = TypeVar("T")


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Request integers as JSON has them: 80 or 80.0 (JSON Schema's integer), never "80" or true.
# Forms validate with strict=False, which lets their text through.
Integer = Annotated[int, BeforeValidator(_whole), Strict()]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Schema, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def required_when(field: str, value: str, then: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema rule across fields, for a model's ``json_schema_extra``: when
    ``field`` is ``value`` (as sent), the properties in ``then`` must be sent and match.

    The document then states what a model validator enforces ("git_url is required when
    source is 'git'"), so that clients and fuzzers see the same rule as the server.
    """
    return {
        "if": {"properties": {field: {"const": value}}, "required": [field]},
        "then": {"properties": then, "required": sorted(then)},
    }


def all_of(*rules: dict[str, Any]) -> dict[str, Any]:
    """Several ``required_when`` rules on one model."""
    return {"allOf": list(rules)}


def unmet(extra: Any, sent: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``sent`` lacks under a model's ``required_when`` rules, as (field, why).

    For bodies that change only what they send (a run's values over a task's current
    ones), the rule holds for what is sent: a body that sets ``source`` to ``git`` sends
    ``git_url`` with it, as the document says, whatever the task had before."""
    if not isinstance(extra, dict):
        return []
    missing: list[tuple[str, str]] = []
    for rule in extra.get("allOf", [extra]):
        if "if" not in rule:
            continue
        ((field, condition),) = rule["if"]["properties"].items()
        if field in sent and sent[field] == condition["const"]:
            missing += [
                (name, f"required when {field} is {condition['const']!r}")
                for name in rule["then"]["required"]
                if sent.get(name) in (None, [])
            ]
    return missing
