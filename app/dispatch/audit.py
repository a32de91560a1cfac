"""Audit records, written in the same transaction as what they record."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.audit import repository as audit
from app.entities.audit.models import AuditEvent
from app.security.principal import Principal


def record(
    session: AsyncSession,
    actor: Principal | str,
    action: str,
    *,
    target_kind: str | None = None,
    target_id: uuid.UUID | str | None = None,
    team_id: uuid.UUID | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    if isinstance(actor, Principal):
        actor_id, actor_name = actor.user_id, actor.username
    else:
        actor_id, actor_name = None, actor[:64]
    audit.add(
        session,
        AuditEvent(
            actor_id=actor_id,
            actor=actor_name,
            action=action,
            target_kind=target_kind,
            target_id=str(target_id) if target_id is not None else None,
            team_id=team_id,
            ip=ip,
            detail={key: str(value) for key, value in detail.items()},
        ),
    )
