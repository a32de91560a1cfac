"""Who is asking, and what their teams let them do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from app.entities.team.models import ROLE_RANK, Role
from app.errors import Forbidden, NotFound


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    username: str
    is_admin: bool
    roles: dict[uuid.UUID, Role] = field(default_factory=dict)
    # "schedule": no user, a schedule's own (app.dispatch.schedules.system_principal).
    via: Literal["session", "token", "schedule"] = "token"

    @property
    def visible_teams(self) -> set[uuid.UUID] | None:
        """The teams whose entities this user may see; ``None`` means every team."""
        return None if self.is_admin else set(self.roles)

    def can(self, team_id: uuid.UUID, role: Role) -> bool:
        if self.is_admin:
            return True
        held = self.roles.get(team_id)
        return held is not None and ROLE_RANK[held] >= ROLE_RANK[role]

    def require(self, team_id: uuid.UUID, role: Role, what: str) -> None:
        """Not visible: 404, as if it did not exist. Visible, role too low: 403."""
        if not self.can(team_id, Role.viewer):
            raise NotFound(f"no {what}")
        if not self.can(team_id, role):
            held = self.roles.get(team_id, Role.viewer)
            raise Forbidden(f"you are {held} of this team; this needs {role}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("only site admins may do this")
