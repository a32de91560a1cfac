from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from app.entities.run.states import RunStatus, TaskStatus
from app.schemas import Schema


class RunTaskRead(Schema):
    position: int
    task_key: str
    task_type: str
    status: TaskStatus
    started_at: datetime | None
    finished_at: datetime | None


class RunSummary(Schema):
    id: uuid.UUID
    operation_id: uuid.UUID
    operation_type: str
    entity_id: uuid.UUID
    status: RunStatus
    exit_code: int | None
    created_at: datetime
    finished_at: datetime | None


class LostAttempt(Schema):
    attempt: int
    worker: str | None = Field(description="The worker that held the attempt.")
    at: datetime = Field(description="When the attempt was settled or handed back.")
    why: str = Field(description="Why it ended without finishing the run.")
    processes: str = Field(description="What became of the attempt's processes.")


class RunRead(RunSummary):
    attempt: int
    values: dict[str, Any] = Field(description="Values sent for this run; secrets left out.")
    requested_by: str | None
    started_at: datetime | None
    log_complete: bool
    worker: str | None = Field(description="The worker that holds (or last held) the run.")
    error: str | None = Field(description="Why the run ended as it did, when Aegir knows more.")
    lost_attempts: list[LostAttempt] = Field(
        description="Attempts whose worker was lost or stopped before the run ended, oldest "
        "first: each was settled (its processes stopped) before the next could start."
    )
    tasks: list[RunTaskRead]


class RunCreate(Schema):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    values: dict[str, dict[str, Any]] = Field(
        default={},
        description="Values per task key, then per field. Fields left out keep the task's "
        "current value. The schema of each operation type is in /api/v1/catalog.",
        examples=[{"install": {"profile": "standard"}}],
    )


class LogLine(Schema):
    seq: int
    stream: str
    line: str
    at: datetime


class RunLog(Schema):
    run_id: uuid.UUID
    lines: list[LogLine]
    next_after: int = Field(description="Pass as ?after= to get the lines that follow.")
    complete: bool = Field(description="True once every line the run emitted is stored.")
