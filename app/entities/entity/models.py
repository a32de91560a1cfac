"""Every entity (server, platform, site, and plugin kinds) is one row of one table.

A kind's own fields live in ``attributes``, validated by the kind's Pydantic model, so
that a plugin adds a kind without a migration. References are rows of their own,
with a foreign key that refuses to delete an entity that others depend on.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONData, TimestampMixin

if TYPE_CHECKING:
    from app.entities.operation.models import Operation
    from app.entities.task.models import TaskInstance


class Entity(TimestampMixin, Base):
    __tablename__ = "entities"
    __table_args__ = (UniqueConstraint("kind", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(253))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    # Set by the operations that change it (a site is 'enabled', 'disabled', 'deleted');
    # None until one has run.
    state: Mapped[str | None] = mapped_column(String(32), default=None)

    references: Mapped[list[EntityReference]] = relationship(
        foreign_keys="EntityReference.source_id",
        back_populates="source",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    tasks: Mapped[list[TaskInstance]] = relationship(
        back_populates="entity", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    operations: Mapped[list[Operation]] = relationship(
        back_populates="entity", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class EntityReference(Base):
    __tablename__ = "entity_references"

    source_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(40), primary_key=True)
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("entities.id", ondelete="RESTRICT"), index=True
    )

    source: Mapped[Entity] = relationship(
        foreign_keys=[source_id], back_populates="references", lazy="raise"
    )
    target: Mapped[Entity] = relationship(foreign_keys=[target_id], lazy="raise")
