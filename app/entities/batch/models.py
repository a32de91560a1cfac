"""Batches: one operation run over many entities, with bounded concurrency.

A batch is a plan (its items, in order) and a ledger (each item's status and run). The
driver (``relay/batches.py``) moves items; every move is a conditional UPDATE in the
repository, so two drivers never start the same item twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONData, utcnow


class BatchStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    stopped = "stopped"
    cancelled = "cancelled"


class ItemStatus(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


# An item in one of these never moves again.
ITEM_FINAL = frozenset(
    {ItemStatus.succeeded, ItemStatus.failed, ItemStatus.skipped, ItemStatus.cancelled}
)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_team_id_created_at", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(40))
    operation: Mapped[str] = mapped_column(String(63))
    # The values given once, by task key: only what was set, secrets sealed (SecretBox).
    values: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    # How the selection was made, for the page: {"ids": [...]} or {"reference": ...}.
    selection: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    concurrency: Mapped[int] = mapped_column(default=1)
    # Stop starting items after this many failed; None: carry on whatever fails.
    max_failures: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default=BatchStatus.running, index=True)
    created_by: Mapped[str] = mapped_column(String(150))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    # The run that started this batch (a platform upgrade), if any.
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Counts by item status, and the words for the page: set when the batch ends.
    summary: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    summary_text: Mapped[str | None] = mapped_column(Text, default=None)

    items: Mapped[list[BatchItem]] = relationship(
        lazy="raise",
        order_by="BatchItem.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "entity_id"),
        Index("ix_batch_items_batch_id_status", "batch_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    # Kept: the page names the item even after its entity is deleted.
    entity_name: Mapped[str] = mapped_column(String(253))
    position: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=ItemStatus.pending)
    # Why it was skipped (or why it failed to start), in words.
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), default=None, index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
