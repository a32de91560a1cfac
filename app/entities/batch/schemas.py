"""What the API takes and shows of batches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.entities.batch.models import BatchStatus, ItemStatus
from app.schemas import Integer, Schema

MAX_ITEMS = 5000


class BatchFilter(BaseModel):
    """Every entity of the kind whose reference ``role`` is the entity ``target``
    ("every site of platform P": role ``platform``, target P's id), optionally only
    those in ``state``."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=40, description="The reference, e.g. platform.")
    target: uuid.UUID = Field(description="The entity referenced.")
    state: str | None = Field(default=None, max_length=32, description="Only in this state.")


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=40, description="The entity kind, e.g. site.")
    operation: str = Field(min_length=1, max_length=63, description="Run on each entity.")
    ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ITEMS,
        description="An explicit selection, in order, each entity once.",
        json_schema_extra={"uniqueItems": True},
    )
    filter: BatchFilter | None = Field(default=None, description="Or a selection by filter.")
    values: dict[str, dict[str, Any]] = Field(
        default={}, description="Given once, by task key; validated for each entity."
    )
    concurrency: Integer = Field(default=2, ge=1, le=100, description="Items running at once.")
    max_failures: Integer | None = Field(
        default=None,
        ge=1,
        description="Stop starting items after this many failed; null: carry on whatever fails.",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> BatchCreate:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        return self


class BatchItemRead(Schema):
    id: uuid.UUID
    entity_id: uuid.UUID
    entity_name: str
    position: int
    status: ItemStatus
    reason: str | None
    run_id: uuid.UUID | None
    started_at: datetime | None
    finished_at: datetime | None


class BatchRead(Schema):
    id: uuid.UUID
    team_id: uuid.UUID
    kind: str
    operation: str
    selection: dict[str, Any]
    concurrency: int
    max_failures: int | None
    status: BatchStatus
    created_by: str
    parent_run_id: uuid.UUID | None
    created_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any]
    summary_text: str | None


class BatchDetail(BatchRead):
    items: list[BatchItemRead]
    counts: dict[str, int] = Field(description="Items by status.")
