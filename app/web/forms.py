"""HTML form fields generated from Pydantic models, and the submitted form read back.

Input types follow the field types: checkbox for booleans, number, select for
``Literal``/``Enum`` choices and entity references, textarea for lists and mappings,
password for secrets (never filled in). Validation stays on the server: errors come
back as messages keyed by the field's form name, shown beside it.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from starlette.datastructures import FormData

Kind = Literal["text", "number", "checkbox", "select", "textarea", "password"]


@dataclass
class Widget:
    name: str  # the form name: "<group>.<field>"
    label: str
    kind: Kind
    help: str = ""
    value: str = ""
    checked: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)
    required: bool = False
    optional: bool = False
    is_set: bool = False  # a secret that has a value
    step: str = "1"
    lines: bool = False  # textarea: one item a line (else JSON)
    error: str | None = None
    # Shown only while another field of the form has one of these values: form name ->
    # values ({"fields.connection": ["ssh"]}), from the field's ``applies_when`` metadata.
    applies_when: dict[str, list[str]] = field(default_factory=dict)
    hidden: bool = False

    @property
    def dom_id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


class FormError(Exception):
    """Messages by form name (``""`` for the form as a whole)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The type inside ``Annotated`` and ``X | None``, and whether None is allowed."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [arg for arg in get_args(annotation) if arg is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return str, optional
            annotation = args[0]
        else:
            return annotation, optional


# Words a label spells as people write them, not as a Python name does ("Ssh user").
WORDS = {
    "ssh": "SSH", "http": "HTTP", "https": "HTTPS", "url": "URL", "urls": "URLs",
    "db": "database", "postgresql": "PostgreSQL", "mariadb": "MariaDB", "mysql": "MySQL",
    "php": "PHP", "fpm": "FPM", "id": "ID", "ip": "IP", "api": "API", "tls": "TLS",
    "acme": "ACME", "dns": "DNS", "git": "Git", "ref": "ref", "uid": "UID", "gid": "GID",
    "cpu": "CPU", "ttl": "TTL", "smtp": "SMTP", "json": "JSON", "yaml": "YAML",
}  # fmt: skip


def humanise(name: str, title: str | None = None) -> str:
    """A field's label: its own ``title`` when the model gives one, else its name in words."""
    if title:
        return title
    words = [WORDS.get(word.lower(), word) for word in name.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def form_text(value: Any, lines: bool = False) -> str:
    """A current value as an input shows it."""
    value = to_jsonable_python(value)
    if value is None:
        return ""
    if isinstance(value, list) and lines:
        return "\n".join(str(item) for item in value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _limits(info: FieldInfo) -> str:
    found = {}
    for meta in info.metadata:
        for bound in ("ge", "gt", "le", "lt"):
            if getattr(meta, bound, None) is not None:
                found[bound] = getattr(meta, bound)
    low = found.get("ge", found.get("gt"))
    high = found.get("le", found.get("lt"))
    if low is not None and high is not None:
        return f"From {low:,} to {high:,}."
    if low is not None:
        return f"At least {low:,}."
    return f"At most {high:,}." if high is not None else ""


def applies_when(group: str, info: FieldInfo) -> dict[str, list[str]]:
    """A field's ``json_schema_extra={"applies_when": {"other_field": value or [values]}}``,
    keyed by the other field's form name."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    found = extra.get("applies_when")
    if not isinstance(found, dict):
        return {}
    prefix = f"{group}." if group else ""
    return {
        prefix + str(other): [str(v) for v in (values if isinstance(values, list) else [values])]
        for other, values in found.items()
    }


def widget(
    group: str,
    name: str,
    info: FieldInfo,
    current: Any,
    choices: Sequence[tuple[str, str]] | None = None,
) -> Widget:
    """One input for field ``name`` of a model; ``choices`` makes it a select (references)."""
    inner, optional = _unwrap(info.annotation)
    help_text = " ".join(part for part in (info.description or "", _limits(info)) if part)
    made = Widget(
        name=f"{group}.{name}" if group else name,
        label=humanise(name, info.title),
        kind="text",
        help=help_text,
        required=info.is_required(),
        optional=optional,
        applies_when=applies_when(group, info),
    )
    if choices is not None:
        made.kind, made.options = "select", list(choices)
    elif inner is bool:
        made.kind, made.checked = "checkbox", bool(current)
        return made
    elif inner is SecretStr:
        made.kind, made.is_set = "password", bool(current)
        return made  # never echoed back
    elif inner in (int, float):
        made.kind, made.step = "number", "1" if inner is int else "any"
    elif get_origin(inner) is Literal:
        made.kind = "select"
        made.options = [(str(arg), str(arg)) for arg in get_args(inner)]
    elif isinstance(inner, type) and issubclass(inner, Enum):
        made.kind = "select"
        made.options = [(str(member.value), str(member.value)) for member in inner]
    elif get_origin(inner) in (list, set, tuple) or inner in (list, set, tuple):
        item = _unwrap(get_args(inner)[0])[0] if get_args(inner) else str
        made.kind, made.lines = "textarea", item in (str, int)
        made.help = " ".join(p for p in (made.help, "One a line." if made.lines else "") if p)
    elif (
        get_origin(inner) is dict
        or inner is dict
        or (isinstance(inner, type) and issubclass(inner, BaseModel))
    ):
        made.kind = "textarea"
        made.help = " ".join(p for p in (made.help, 'As JSON, e.g. {"key": "value"}.') if p)
    if made.kind == "select" and optional:
        made.options.insert(0, ("", "(none)"))
    made.value = form_text(current, made.lines)
    return made


def widgets(
    group: str,
    model: type[BaseModel],
    current: Mapping[str, Any],
    choices: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[Widget]:
    """Every field of ``model``, pre-filled from ``current`` (or the field's default)."""
    made = []
    for name, info in model.model_fields.items():
        if name in current:
            value = current[name]
        elif info.is_required():
            value = None
        else:
            value = info.get_default(call_default_factory=True)
        made.append(widget(group, name, info, value, (choices or {}).get(name)))
    hide_inapplicable(made)
    return made


def hide_inapplicable(fields: Sequence[Widget]) -> None:
    """Hide the fields whose ``applies_when`` the other fields' values do not meet (the
    page's script does the same live, as a select changes)."""
    shown = {item.name: ("true" if item.checked else "false") if item.kind == "checkbox"
             else item.value for item in fields}  # fmt: skip
    for item in fields:
        item.hidden = any(
            other in shown and shown[other] not in values
            for other, values in item.applies_when.items()
        )


def _text(form: FormData, name: str) -> str | None:
    values = [value for value in form.getlist(name) if isinstance(value, str)]
    return values[-1] if values else None


def read(form: FormData, fields: Iterable[Widget], *, only_changed: bool) -> dict[str, Any]:
    """The submitted values by field name, as the model's validation expects them.

    ``only_changed`` leaves out what is as it was shown, so that untouched fields keep
    their stored state (a default stays a default). An empty secret is always left out:
    it keeps its current value.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in fields:
        key = item.name.rsplit(".", 1)[-1]
        if item.kind == "checkbox":
            checked = _text(form, item.name) == "true"
            if not only_changed or checked != item.checked:
                values[key] = checked
            continue
        text = (_text(form, item.name) or "").replace("\r\n", "\n")
        if item.kind == "password":
            if text:
                values[key] = text
            continue
        if only_changed and text == item.value and not item.required:
            continue  # a required field (no default) is sent every time: runs need it
        try:
            parsed = _parse(item, text)
        except ValueError as error:
            errors[item.name] = str(error)
            continue
        if parsed is not _OMIT:
            values[key] = parsed
    if errors:
        raise FormError(errors)
    return values


_OMIT = object()


def _parse(item: Widget, text: str) -> Any:
    if item.kind == "textarea":
        if item.lines:
            return [line.strip() for line in text.split("\n") if line.strip()]
        if not text.strip():
            return None if item.optional else {}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError('must be JSON, e.g. {"key": "value"}') from None
    if text == "":
        if item.optional:
            return None
        if not item.required:
            return _OMIT  # its default
    if item.kind == "number":
        return _number(text.strip(), whole=item.step == "1")
    return text


def _number(text: str, *, whole: bool) -> int | float:
    """A number field's text as the number the (strict) model takes."""
    try:
        return int(text) if whole else float(text)
    except ValueError:
        raise ValueError("must be a whole number" if whole else "must be a number") from None


def error_name(loc: Sequence[str | int], prefix: int) -> str:
    """The form name a validation error's location points at (past ``prefix`` parts)."""
    parts = [str(part) for part in loc[prefix:]]
    return ".".join(parts[:2])


def attach(fields: Iterable[Widget], errors: Mapping[str, str]) -> dict[str, str]:
    """Put each message beside its field; answer those that belong to no field."""
    by_name = {item.name: item for item in fields}
    left: dict[str, str] = {}
    for name, message in errors.items():
        if name in by_name:
            by_name[name].error = message
        else:
            left[name] = message
    return left
