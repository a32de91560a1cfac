from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.api.access import OperationRun, OperationView
from app.api.deps import (
    Authenticated,
    CatalogDep,
    PrincipalDep,
    RedisDep,
    SecretBoxDep,
    SessionDep,
    client_ip,
)
from app.dispatch import runs as run_service
from app.dispatch import views
from app.entities.operation.schemas import OperationRead
from app.entities.run.schemas import RunCreate, RunRead

router = APIRouter(prefix="/api/v1/operations", tags=["operations"], dependencies=[Authenticated])


@router.get(
    "/{operation_id}",
    response_model=OperationRead,
    responses={404: {"description": "No such operation"}},
    summary="An operation with its tasks' current values",
    operation_id="operations_get",
)
async def get_operation(
    session: SessionDep, catalog: CatalogDep, operation: OperationView
) -> OperationRead:
    return await views.operation_detail(session, catalog, operation)


@router.post(
    "/{operation_id}/runs",
    response_model=RunRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "No such operation"},
        403: {"description": "Not an operator"},
        409: {"description": "The entity is not in a state this operation runs in"},
    },
    summary="Run an operation (by its id; typed routes: /{plural}/{id}/operations/{name}/runs)",
    operation_id="operations_run",
    deprecated=True,
    # Served for the clients written against it, but not in the document: its body depends
    # on which operation the path names, which a schema cannot say. The typed routes can.
    include_in_schema=False,
    description="Validates the values against the operation's composed schema, saves them on "
    "its tasks and queues a run. A 422 names each bad field as [body, values, task, field]; a "
    "409 says which state the entity must be in first (e.g. a site is deleted once disabled).",
)
async def create_run(
    session: SessionDep,
    principal: PrincipalDep,
    catalog: CatalogDep,
    redis: RedisDep,
    box: SecretBoxDep,
    operation: OperationRun,
    body: RunCreate,
    request: Request,
) -> RunRead:
    ip = client_ip(request)
    run = await run_service.request(
        session, catalog, redis, box, principal, operation, body.values, ip
    )
    return RunRead.model_validate(run)
