from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.entities.team.models import Role
from app.schemas import Schema

TeamName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TeamName


class MemberRead(Schema):
    user_id: uuid.UUID
    username: str
    role: Role


class TeamRead(Schema):
    id: uuid.UUID
    name: str
    created_at: datetime
    members: list[MemberRead] = []


class MemberSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
