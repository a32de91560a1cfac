"""Imports every model so that the metadata (and Alembic) sees all tables."""

from app.db import Base
from app.entities.audit.models import AuditEvent
from app.entities.batch.models import Batch, BatchItem
from app.entities.entity.models import Entity, EntityReference
from app.entities.notification.models import (
    NotificationDelivery,
    NotificationTarget,
    NotifierCursor,
)
from app.entities.operation.models import Operation, OperationTask
from app.entities.run.models import Run, RunLogLine, RunTask
from app.entities.schedule.models import Schedule, ScheduleSlot
from app.entities.task.models import TaskInstance
from app.entities.team.models import Membership, Team
from app.entities.token.models import ApiToken
from app.entities.user.models import User

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "Batch",
    "BatchItem",
    "Entity",
    "EntityReference",
    "Membership",
    "NotificationDelivery",
    "NotificationTarget",
    "NotifierCursor",
    "Operation",
    "OperationTask",
    "Run",
    "RunLogLine",
    "RunTask",
    "Schedule",
    "ScheduleSlot",
    "TaskInstance",
    "Team",
    "User",
]
