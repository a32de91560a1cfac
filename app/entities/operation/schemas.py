from __future__ import annotations

import uuid

from app.entities.run.schemas import RunSummary
from app.entities.task.schemas import TaskInstanceRead
from app.schemas import Schema


class OperationSummary(Schema):
    id: uuid.UUID
    entity_id: uuid.UUID
    type: str
    label: str
    destructive: bool
    latest_run: RunSummary | None


class OperationRead(OperationSummary):
    entity_kind: str
    entity_name: str
    tasks: list[TaskInstanceRead]
