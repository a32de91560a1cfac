"""``/api/v1/batches``: one operation over many entities. Scoped by team and role: a
batch of a team the asker is not in is a 404, as if it did not exist."""

# No ``from __future__ import annotations``: FastAPI reads the closures' annotations.

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status

from app.api.access import Asking
from app.api.deps import (
    Authenticated,
    CatalogDep,
    Limit,
    Offset,
    PrincipalDep,
    RedisDep,
    SecretBoxDep,
    SessionDep,
    client_ip,
)
from app.dispatch import batches as batch_service
from app.entities.batch import repository as batches
from app.entities.batch.models import Batch, BatchStatus
from app.entities.batch.schemas import BatchCreate, BatchDetail, BatchItemRead, BatchRead
from app.entities.team.models import Role
from app.schemas import Page

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such batch"}}


def _batch_access(role: Role) -> Any:
    async def batch(session: SessionDep, principal: Asking, batch_id: uuid.UUID) -> Batch:
        found = await batches.get(session, batch_id)
        principal.require(found.team_id, role, f"batch with id {batch_id}")
        return found

    return Depends(batch)


BatchView = Annotated[Batch, _batch_access(Role.viewer)]
BatchOperate = Annotated[Batch, _batch_access(Role.operator)]


async def detail(session: SessionDep, batch: Batch) -> BatchDetail:
    """The batch with its items and the count of each status (also for the page)."""
    counts = await batches.counts(session, batch.id)
    return BatchDetail(
        **BatchRead.model_validate(batch).model_dump(),
        items=[BatchItemRead.model_validate(item) for item in batch.items],
        counts=counts,
    )


@router.get("", response_model=Page[BatchRead], summary="Batches, newest first")
async def list_batches(
    session: SessionDep,
    principal: PrincipalDep,
    team: uuid.UUID | None = None,
    status: BatchStatus | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[BatchRead]:
    rows, total = await batches.page(session, principal.visible_teams, team, status, limit, offset)
    items = [BatchRead.model_validate(row) for row in rows]
    return Page[BatchRead](items=items, total=total, limit=limit, offset=offset)


@router.get("/{batch_id}", response_model=BatchDetail, responses=NOT_FOUND, summary="A batch")
async def get_batch(session: SessionDep, batch: BatchView) -> BatchDetail:
    return await detail(session, batch)


@router.post(
    "",
    response_model=BatchDetail,
    status_code=status.HTTP_202_ACCEPTED,
    responses={403: {"description": "Not an operator"}, 404: {"description": "No such entity"}},
    summary="Run an operation over many entities",
    description="An explicit list of ids, or a filter (every entity of the kind whose "
    "reference `role` is `target`, optionally in `state`). The values are given once and "
    "validated for each entity (a 422 names the field and the entity); at most "
    "`concurrency` items run at once; after `max_failures` failed items the rest are "
    "skipped. An item whose entity is not in a state the operation runs in is skipped, "
    "with why.",
)
async def create_batch(
    session: SessionDep,
    principal: PrincipalDep,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    body: BatchCreate,
    request: Request,
) -> BatchDetail:
    selection = batch_service.Selection(
        ids=body.ids,
        role=body.filter.role if body.filter else None,
        target=body.filter.target if body.filter else None,
        state=body.filter.state if body.filter else None,
    )
    batch = await batch_service.start(
        session,
        batch_service.Services(catalog, redis, box),
        principal,
        kind=body.kind,
        operation=body.operation,
        selection=selection,
        values=body.values,
        concurrency=body.concurrency,
        max_failures=body.max_failures,
        ip=client_ip(request),
    )
    return await detail(session, await batches.get(session, batch.id))


@router.post(
    "/{batch_id}/cancel",
    response_model=BatchDetail,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"description": "The batch has already ended"}},
    summary="Cancel a batch",
    description="Pending items are cancelled at once; running items' runs are asked to stop.",
)
async def cancel_batch(
    session: SessionDep,
    principal: PrincipalDep,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    batch: BatchOperate,
    request: Request,
) -> BatchDetail:
    services = batch_service.Services(catalog, redis, box)
    batch = await batch_service.cancel(session, services, principal, batch, client_ip(request))
    return await detail(session, batch)
