from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from app.schemas import Schema


class TaskInstanceRead(Schema):
    id: uuid.UUID
    key: str
    type: str
    label: str
    runs: bool = Field(description="False when the operation only reads this task's values.")
    values: dict[str, Any] = Field(
        description="Current values, defaults included; secrets show only whether they are set."
    )
    outputs: dict[str, Any] = Field(description="What the back-end wrote back.")
