from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.schemas import Schema


class AuditRead(Schema):
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor: str
    action: str
    target_kind: str | None
    target_id: str | None
    team_id: uuid.UUID | None
    ip: str | None
    detail: dict[str, Any]
