"""Operations of an entity, each an ordered list of the entity's task instances."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.entities.task.models import TaskInstance

if TYPE_CHECKING:
    from app.entities.entity.models import Entity


class Operation(Base):
    __tablename__ = "operations"
    __table_args__ = (UniqueConstraint("entity_id", "type"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(63))

    entity: Mapped[Entity] = relationship(back_populates="operations", lazy="raise")
    steps: Mapped[list[OperationTask]] = relationship(
        back_populates="operation",
        lazy="raise",
        order_by="OperationTask.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class OperationTask(Base):
    __tablename__ = "operation_tasks"

    operation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task_instances.id", ondelete="CASCADE"), index=True
    )
    # False for a task whose values the operation reads without running it.
    runs: Mapped[bool] = mapped_column(default=True)

    operation: Mapped[Operation] = relationship(back_populates="steps", lazy="raise")
    task: Mapped[TaskInstance] = relationship(lazy="raise")
