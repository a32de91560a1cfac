from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import Authenticated, Limit, Offset, PrincipalDep, RedisDep, SessionDep, client_ip
from app.dispatch import runs as run_service
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.schemas import LogLine, RunLog, RunRead
from app.entities.run.states import RunStatus
from app.entities.team.models import Role
from app.schemas import Page
from app.security.principal import Principal

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run"}}


async def _visible_run(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> Run:
    run = await runs.get(session, run_id)
    principal.require(await runs.team_of(session, run), Role.viewer, f"run with id {run_id}")
    return run


@router.get("", response_model=Page[RunRead], summary="Runs, newest first")
async def list_runs(
    session: SessionDep,
    principal: PrincipalDep,
    entity: uuid.UUID | None = None,
    operation: uuid.UUID | None = None,
    status: RunStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RunRead]:
    rows, total = await runs.page(
        session,
        entity_id=entity,
        operation_id=operation,
        status=status,
        limit=limit,
        offset=offset,
        teams=principal.visible_teams,
    )
    items = [RunRead.model_validate(row) for row in rows]
    return Page[RunRead](items=items, total=total, limit=limit, offset=offset)


@router.get("/{run_id}", response_model=RunRead, responses=NOT_FOUND, summary="A run")
async def get_run(session: SessionDep, principal: PrincipalDep, run_id: uuid.UUID) -> RunRead:
    return RunRead.model_validate(await _visible_run(session, principal, run_id))


@router.post(
    "/{run_id}/cancel",
    response_model=RunRead,
    status_code=202,
    responses={**NOT_FOUND, 409: {"description": "The run has already ended"}},
    summary="Cancel a queued or running run",
    description="A queued run is cancelled at once. A running one shows `cancelling` while "
    "its process group gets SIGTERM (then SIGKILL after a grace period), then `cancelled`.",
)
async def cancel_run(
    session: SessionDep,
    principal: PrincipalDep,
    redis: RedisDep,
    run_id: uuid.UUID,
    request: Request,
) -> RunRead:
    run = await run_service.cancel(session, redis, principal, run_id, client_ip(request))
    return RunRead.model_validate(run)


@router.get("/{run_id}/log", response_model=RunLog, responses=NOT_FOUND, summary="A run's log")
async def get_log(
    session: SessionDep,
    principal: PrincipalDep,
    run_id: uuid.UUID,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Lines after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> RunLog:
    run = await _visible_run(session, principal, run_id)
    lines = await runs.log_after(session, run_id, after, limit)
    next_after = lines[-1].seq if lines else after
    return RunLog(
        run_id=run.id,
        lines=[LogLine.model_validate(line) for line in lines],
        next_after=next_after,
        complete=run.log_complete,
    )
