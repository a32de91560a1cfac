from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.api.access import RunOperate, RunView
from app.api.deps import Authenticated, Limit, Offset, PrincipalDep, RedisDep, SessionDep, client_ip
from app.dispatch import runs as run_service
from app.entities.run import repository as runs
from app.entities.run.schemas import LogLine, RunLog, RunRead
from app.entities.run.states import RunStatus
from app.schemas import Page

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run"}}


@router.get(
    "", response_model=Page[RunRead], summary="Runs, newest first", operation_id="runs_list"
)
async def list_runs(
    session: SessionDep,
    principal: PrincipalDep,
    entity: uuid.UUID | None = None,
    operation: uuid.UUID | None = None,
    status: RunStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RunRead]:
    rows, total = await runs.newest_page(
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


@router.get(
    "/{run_id}",
    response_model=RunRead,
    responses=NOT_FOUND,
    summary="A run",
    operation_id="runs_get",
)
async def get_run(run: RunView) -> RunRead:
    return RunRead.model_validate(run)


@router.post(
    "/{run_id}/cancel",
    response_model=RunRead,
    status_code=202,
    responses={**NOT_FOUND, 409: {"description": "The run has already ended"}},
    summary="Cancel a queued or running run",
    operation_id="runs_cancel",
    description="A queued run is cancelled at once. A running one shows `cancelling` while "
    "its process group gets SIGTERM (then SIGKILL after a grace period), then `cancelled`.",
)
async def cancel_run(
    session: SessionDep,
    principal: PrincipalDep,
    redis: RedisDep,
    run: RunOperate,
    request: Request,
) -> RunRead:
    run = await run_service.cancel(session, redis, principal, run, client_ip(request))
    return RunRead.model_validate(run)


@router.get(
    "/{run_id}/log",
    response_model=RunLog,
    responses=NOT_FOUND,
    summary="A run's log",
    operation_id="runs_log",
)
async def get_log(
    session: SessionDep,
    run: RunView,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Lines after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> RunLog:
    lines = await runs.lines_after(session, run.id, after, limit)
    next_after = lines[-1].seq if lines else after
    return RunLog(
        run_id=run.id,
        lines=[LogLine(**line._asdict()) for line in lines],
        next_after=next_after,
        complete=run.log_complete,
    )
