from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from app.entities.team.models import Role
from app.schemas import Schema

Username = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: str = Field(min_length=10, max_length=512, description="At least 10 characters.")
    is_admin: StrictBool = False


class UserRead(Schema):
    id: uuid.UUID
    username: str
    is_admin: bool
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None


class TeamRole(Schema):
    team_id: uuid.UUID
    team: str
    role: Role


class Me(UserRead):
    teams: list[TeamRole]
