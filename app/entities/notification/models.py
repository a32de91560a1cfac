"""Notification targets of a team, and the log of every delivery made to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONData, utcnow


class TargetKind(StrEnum):
    webhook = "webhook"
    email = "email"


class DeliveryState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class NotificationTarget(Base):
    __tablename__ = "notification_targets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    # The signing secret, sealed by the app's SecretBox ("enc:v1:..."), never shown.
    secret: Mapped[str | None] = mapped_column(Text, default=None)
    addresses: Mapped[list[str]] = mapped_column(JSONData, default=list)
    # Filters; an empty list lets every value through.
    entity_kinds: Mapped[list[str]] = mapped_column(JSONData, default=list)
    operations: Mapped[list[str]] = mapped_column(JSONData, default=list)
    statuses: Mapped[list[str]] = mapped_column(JSONData, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NotificationDelivery(Base):
    """One event for one target: inserted before anything is sent, so that however many
    relays see the run end, the UNIQUE (target, run, event) row makes it one delivery."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("target_id", "run_id", "event"),
        # The due deliveries, soonest first.
        Index("ix_notification_deliveries_state_next", "state", "next_attempt_at"),
        Index("ix_notification_deliveries_target_created", "target_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notification_targets.id", ondelete="CASCADE")
    )
    # None for a test delivery.
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), default=None, index=True
    )
    event: Mapped[str] = mapped_column(String(40))
    # The body as first built: each retry sends the same bytes (with a new signature).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # The relay sending it holds it until then; past it, another relay may take it over.
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    # Each attempt: {at, code, error}, oldest first.
    tries: Mapped[list[dict[str, Any]]] = mapped_column(JSONData, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class NotifierCursor(Base):
    """How far the notifiers have read the runs that ended (shared by every relay)."""

    __tablename__ = "notifier_cursor"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    finished_at: Mapped[datetime]
