"""Runs: one execution of an operation, its per-task status and its numbered log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONData, utcnow
from app.entities.run.states import RunStatus, TaskStatus


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_entity_id_created_at", "entity_id", "created_at"),
        # The runs list, newest first: all runs, or those of one status (migration 0006).
        Index("ix_runs_created_at_id", "created_at", "id"),
        Index("ix_runs_status_created_at_id", "status", "created_at", "id"),
        # The notifiers read ended runs in this order (migration 0008).
        Index("ix_runs_finished_at", "finished_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    operation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    operation_type: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.queued, index=True)
    attempt: Mapped[int] = mapped_column(default=0)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    # The values sent for this run, secrets left out.
    values: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    requested_by: Mapped[str | None] = mapped_column(String(150), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    log_emitted: Mapped[int | None] = mapped_column(default=None)
    log_complete: Mapped[bool] = mapped_column(default=False)
    # Which worker holds (or last held) the lease, and why the run ended as it did.
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Attempts whose worker was lost or stopped: {attempt, worker, at, why}, oldest first.
    # Kept when a later attempt runs, so the run says what happened to each.
    lost_attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONData, default=list)

    tasks: Mapped[list[RunTask]] = relationship(
        lazy="raise",
        order_by="RunTask.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class RunTask(Base):
    __tablename__ = "run_tasks"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    task_key: Mapped[str] = mapped_column(String(63))
    task_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default=TaskStatus.pending)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class RunLogLine(Base):
    __tablename__ = "run_log_lines"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(String(10))
    line: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
