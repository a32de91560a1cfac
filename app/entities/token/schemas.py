from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.schemas import Integer, Schema


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    ]
    expires_in_days: Integer = Field(default=90, ge=1, le=366)


class TokenRead(Schema):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it by.")
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown this once: store it now.")
