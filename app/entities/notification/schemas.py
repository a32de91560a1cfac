"""What the API takes and shows of notification targets and deliveries; never a secret."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StringConstraints,
    UrlConstraints,
    WithJsonSchema,
    model_validator,
)

from app.entities.notification.models import DeliveryState, TargetKind
from app.entities.run.states import FINAL, RunStatus
from app.schemas import Schema, all_of, required_when

Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
Word = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9_-]+$")]
# An address as SMTP takes it; no display names, nothing that could add a header.
Address = Annotated[
    str, StringConstraints(max_length=254, pattern=r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")
]
Url = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
Secret = Annotated[SecretStr, Field(min_length=16, max_length=200)]
# The statuses a run can end with: the events a target may ask for.
ENDED = sorted(str(status) for status in FINAL)


# A run status, documented as the ones a run ends with: the only ones a filter takes.
EndStatus = Annotated[RunStatus, WithJsonSchema({"type": "string", "enum": ENDED})]


def _ended(statuses: list[RunStatus]) -> list[RunStatus]:
    wrong = [str(status) for status in statuses if status not in FINAL]
    if wrong:
        raise ValueError(f"not a status a run ends with: {', '.join(wrong)} (one of {ENDED})")
    return statuses


class Filters(BaseModel):
    """Which run ends a target hears of; an empty list lets every value through."""

    entity_kinds: list[Word] = Field(default=[], max_length=50)
    operations: list[Word] = Field(default=[], max_length=100)
    statuses: list[EndStatus] = Field(
        default=[], max_length=4, description=f"Among {', '.join(ENDED)}; empty: all."
    )

    @model_validator(mode="after")
    def _only_endings(self) -> Filters:
        _ended(self.statuses)
        return self


class TargetCreate(Filters):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=all_of(
            required_when(
                "kind", "webhook", {"url": {"type": "string"}, "secret": {"type": "string"}}
            ),
            required_when("kind", "email", {"addresses": {"type": "array", "minItems": 1}}),
        ),
    )

    team_id: uuid.UUID
    name: Name
    kind: TargetKind
    url: Url | None = Field(default=None, description="Webhooks: where to POST.")
    secret: Secret | None = Field(
        default=None, description="Webhooks: the key their signature is made with; never shown."
    )
    addresses: list[Address] = Field(default=[], max_length=50, description="E-mail: recipients.")
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _kind_needs(self) -> TargetCreate:
        if self.kind == TargetKind.webhook and (self.url is None or self.secret is None):
            raise ValueError("a webhook needs a url and a secret")
        if self.kind == TargetKind.email and not self.addresses:
            raise ValueError("an e-mail target needs at least one address")
        return self


class TargetUpdate(BaseModel):
    """Only the fields sent change; a secret sent replaces the old one. ``null`` leaves a
    field as it is."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    url: Url | None = None
    secret: Secret | None = None
    # At least one: an e-mail target always has an address; null keeps them as they are.
    addresses: list[Address] | None = Field(default=None, min_length=1, max_length=50)
    entity_kinds: list[Word] | None = Field(default=None, max_length=50)
    operations: list[Word] | None = Field(default=None, max_length=100)
    statuses: list[EndStatus] | None = Field(default=None, max_length=4)
    enabled: StrictBool | None = None

    @model_validator(mode="after")
    def _only_endings(self) -> TargetUpdate:
        _ended(self.statuses or [])
        return self


class TargetRead(Schema):
    id: uuid.UUID
    team_id: uuid.UUID
    name: str
    kind: TargetKind
    url: str | None
    has_secret: bool = Field(description="Whether a signing secret is set (it is never shown).")
    addresses: list[str]
    entity_kinds: list[str]
    operations: list[str]
    statuses: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _secret_as_flag(cls, data: Any) -> Any:
        if isinstance(data, BaseModel | dict):
            return data
        fields = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)}
        return {**fields, "has_secret": bool(getattr(data, "secret", None))}


class Attempt(Schema):
    at: datetime
    code: int | None = Field(description="The receiver's HTTP status (webhooks).")
    error: str | None = Field(description="Why the attempt failed, when it did.")


class DeliveryRead(Schema):
    id: uuid.UUID
    target_id: uuid.UUID
    run_id: uuid.UUID | None = Field(description="None for a test delivery.")
    event: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    tries: list[Attempt]
    created_at: datetime
    finished_at: datetime | None
