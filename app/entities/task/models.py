"""Task instances: one per task key of an entity, shared by the operations that use it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONData, TimestampMixin

if TYPE_CHECKING:
    from app.entities.entity.models import Entity


class TaskInstance(TimestampMixin, Base):
    __tablename__ = "task_instances"
    __table_args__ = (UniqueConstraint("entity_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(100))
    # Values the user set, validated by the task type's Fields model (defaults not stored).
    values: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    # What the back-end wrote back, only into fields the task type's Outputs declares.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)

    entity: Mapped[Entity] = relationship(back_populates="tasks", lazy="raise")
