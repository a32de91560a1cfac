"""Every query on the audit log."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.audit.models import AuditEvent


def add(session: AsyncSession, event: AuditEvent) -> None:
    """Written with the transaction it records: at its flush, or not at all."""
    session.add(event)


async def page(
    session: AsyncSession, action: str | None, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    """Newest first; ``action`` keeps only events of that action."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return list(rows), total


async def newest(session: AsyncSession, limit: int) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    return list(await session.scalars(query))
