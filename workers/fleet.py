"""The worker's door to batches, for tasks that drive one (``executors.batch``).

The executor sees plain data only; this opens the sessions. A batch started by a run
names it (``parent_run_id``), so a later attempt of the same run follows the batch the
earlier one started instead of starting a second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.types import BatchPlan
from app.db import session_scope
from app.dispatch import batches as batch_service
from app.dispatch.schedules import system_principal
from app.entities.batch import repository as batches
from app.entities.run import repository as runs
from app.entities.schedule import repository as schedules
from app.entities.team import repository as teams
from app.entities.user import repository as users
from app.errors import NotFound
from app.security.principal import Principal
from executors.batch import BatchState, ItemState


@dataclass(frozen=True)
class WorkerFleet:
    sessionmaker: async_sessionmaker[AsyncSession]
    services: batch_service.Services

    async def start(self, run_id: str, entity_id: str, plan: BatchPlan) -> str:
        async with session_scope(self.sessionmaker) as session:
            earlier = await batches.by_parent_run(session, uuid.UUID(run_id))
            if earlier is not None:
                return str(earlier.id)
            run = await runs.get(session, uuid.UUID(run_id))
            batch = await batch_service.start(
                session,
                self.services,
                await _asker(session, run.id, run.requested_by),
                kind=plan.kind,
                operation=plan.operation,
                selection=batch_service.Selection(
                    role=plan.role, target=uuid.UUID(entity_id), skip_states=plan.skip_states
                ),
                values={key: dict(given) for key, given in plan.values.items()},
                concurrency=plan.concurrency,
                max_failures=plan.max_failures,
                parent_run_id=run.id,
            )
            return str(batch.id)

    async def state(self, batch_id: str) -> BatchState:
        async with session_scope(self.sessionmaker, writes=False) as session:
            batch = await batches.get(session, uuid.UUID(batch_id))
        items = [ItemState(i.entity_name, i.status, i.reason) for i in batch.items]
        return BatchState(
            batch_id, batch.status, batch.finished_at is not None, items, batch.summary_text
        )

    async def cancel(self, batch_id: str) -> None:
        async with session_scope(self.sessionmaker) as session:
            batch = await batches.get(session, uuid.UUID(batch_id))
            if batch.finished_at is None:
                principal = Principal(uuid.UUID(int=0), "aegir", True)
                await batch_service.cancel(session, self.services, principal, batch)


async def _asker(session: AsyncSession, run_id: uuid.UUID, username: str | None) -> Principal:
    """Who asked for the run, with the roles they hold now: a user, or the schedule whose
    slot started it (an operator of its team, as its runs are requested)."""
    user = None if username is None else await users.by_username(session, username)
    if user is None:
        schedule = await schedules.by_fired_run(session, run_id)
        if schedule is not None:
            return system_principal(schedule)
        raise NotFound(f"the run's requester {username!r} is gone; no batch started")
    return Principal(user.id, user.username, user.is_admin, await teams.roles_of(session, user.id))
