"""Imports every model so that the metadata (and Alembic) sees all tables."""

from app.db import Base
from app.entities.entity.models import Entity, EntityReference
from app.entities.operation.models import Operation, OperationTask
from app.entities.run.models import Run, RunLogLine, RunTask
from app.entities.task.models import TaskInstance

__all__ = [
    "Base",
    "Entity",
    "EntityReference",
    "Operation",
    "OperationTask",
    "Run",
    "RunLogLine",
    "RunTask",
    "TaskInstance",
]
