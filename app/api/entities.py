"""One router per entity kind, typed from the kind's own models."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response, status

from app import metrics
from app.api.access import entity_access
from app.api.deps import (
    Authenticated,
    CatalogDep,
    Limit,
    NameFilter,
    Offset,
    PrincipalDep,
    RedisDep,
    SecretBoxDep,
    SessionDep,
    client_ip,
)
from app.catalog.types import ActionType, EntityKind, OperationType
from app.dispatch import actions, views
from app.dispatch import entities as entity_service
from app.dispatch import runs as run_service
from app.dispatch.audit import record
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.entity.schemas import EntityUpdate, create_model_for, read_model
from app.entities.operation import repository as operations
from app.entities.operation.schemas import OperationSummary
from app.entities.run.schemas import RunCreate, RunRead
from app.entities.team.models import Role
from app.schemas import Page

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such entity"}}


def entity_router(kind: EntityKind) -> APIRouter:
    router = APIRouter(
        prefix=f"/api/v1/{kind.plural}", tags=[kind.plural], dependencies=[Authenticated]
    )
    create_body: Any = create_model_for(kind)
    read: Any = read_model(kind, detail=False)
    detail: Any = read_model(kind, detail=True)
    label = kind.label.lower()
    ident = api_ident(kind)
    # This kind's entity of the path's id, which the one asking may see, or administer.
    Viewed = Annotated[Entity, entity_access(Role.viewer, kind)]
    Administered = Annotated[Entity, entity_access(Role.admin, kind)]

    @router.get(
        "", response_model=Page[read], summary=f"List {kind.plural}", operation_id=f"{ident}_list"
    )
    async def list_entities(
        session: SessionDep,
        principal: PrincipalDep,
        name: NameFilter = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Any:
        teams = principal.visible_teams
        rows, total = await entities.page(session, kind.name, name, limit, offset, teams)
        items = await views.entity_list(session, principal, kind, rows)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @router.post(
        "",
        response_model=detail,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a {label} with its operations and tasks",
        operation_id=f"{ident}_create",
        responses={
            404: {"description": "A referenced entity or the team is not one you can see"},
            409: {"description": "The name is taken"},
        },
    )
    async def create_entity(session: SessionDep, principal: PrincipalDep, body: create_body) -> Any:
        entity = await entity_service.create(session, principal, kind, body)
        return await views.entity_detail(session, principal, kind, entity)

    @router.get(
        "/{entity_id}",
        response_model=detail,
        responses=NOT_FOUND,
        summary=f"Get a {label}",
        operation_id=f"{ident}_get",
    )
    async def get_entity(session: SessionDep, principal: PrincipalDep, entity: Viewed) -> Any:
        return await views.entity_detail(session, principal, kind, entity)

    @router.patch(
        "/{entity_id}",
        response_model=detail,
        responses={**NOT_FOUND, 409: {"description": "The name is taken"}},
        summary=f"Change a {label}",
        operation_id=f"{ident}_update",
        openapi_extra={"x-aegir-update-body": _camel(kind.name)},
    )
    async def update_entity(
        session: SessionDep,
        principal: PrincipalDep,
        entity: Administered,
        body: EntityUpdate = Body(...),
    ) -> Any:
        entity = await entity_service.change(session, principal, kind, entity, body)
        return await views.entity_detail(session, principal, kind, entity)

    @router.delete(
        "/{entity_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={**NOT_FOUND, 409: {"description": "Others depend on it, or a run is going"}},
        summary=f"Delete a {label} (its record; the delete operation removes it from servers)",
        operation_id=f"{ident}_delete",
    )
    async def delete_entity(
        session: SessionDep, principal: PrincipalDep, entity: Administered
    ) -> Response:
        await entity_service.remove(session, principal, kind, entity)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get(
        "/{entity_id}/operations",
        response_model=list[OperationSummary],
        responses=NOT_FOUND,
        summary=f"Operations of a {label}",
        operation_id=f"{ident}_operations",
    )
    async def list_operations(session: SessionDep, entity: Viewed) -> Any:
        ops = await operations.for_entity(session, entity.id)
        return await views.operation_summaries(session, kind, ops)

    for action in kind.actions.values():
        _action_route(router, kind, action)
    for op_type in kind.operations.values():
        _run_route(router, kind, op_type)
    return router


def api_ident(kind: EntityKind) -> str:
    """The kind's plural as an identifier: the prefix of its routes' operation ids."""
    return kind.plural.replace("-", "_")


def _run_route(router: APIRouter, kind: EntityKind, op_type: OperationType) -> None:
    """``POST /{plural}/{id}/operations/{name}/runs``: one route per operation type, whose
    body is that operation's own values model in the document (``app.main`` puts it
    there), so a generated client has a typed call per operation. The server checks the
    values exactly as the generic ``/operations/{id}/runs`` does."""
    Operated = Annotated[Entity, entity_access(Role.operator, kind)]
    body_name = run_body_name(kind, op_type)

    @router.post(
        f"/{{entity_id}}/operations/{op_type.name}/runs",
        response_model=RunRead,
        status_code=status.HTTP_202_ACCEPTED,
        operation_id=f"{api_ident(kind)}_run_{op_type.name}",
        summary=f"Run {op_type.label} on a {kind.label.lower()}",
        description=(op_type.description or op_type.label) + " Values left out keep the "
        "task's current value; a 422 names each bad field as [body, values, task, field].",
        responses={
            **NOT_FOUND,
            409: {"description": "The entity is not in a state this operation runs in"},
        },
        openapi_extra={"x-aegir-run-body": body_name},
    )
    async def run_operation(
        session: SessionDep,
        principal: PrincipalDep,
        catalog: CatalogDep,
        redis: RedisDep,
        box: SecretBoxDep,
        entity: Operated,
        request: Request,
        body: RunCreate = Body(default_factory=RunCreate),
    ) -> RunRead:
        operation = await operations.of_entity(session, entity.id, op_type.name)
        run = await run_service.request(
            session, catalog, redis, box, principal, operation, body.values, client_ip(request)
        )
        return RunRead.model_validate(run)


def run_body_name(kind: EntityKind, op_type: OperationType) -> str:
    """The document's name for the typed body of ``op_type``'s run route."""
    return f"{_camel(kind.name)}{_camel(op_type.name)}RunCreate"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _action_route(router: APIRouter, kind: EntityKind, action: ActionType) -> None:
    Operated = Annotated[Entity, entity_access(Role.operator, kind)]

    @router.post(
        f"/{{entity_id}}/actions/{action.name}",
        response_model=action.result,
        name=f"{kind.name}_{action.name}",
        operation_id=f"{api_ident(kind)}_action_{action.name}",
        summary=f"{action.label} ({kind.label.lower()} action)",
        description=f"{action.description} Answers within "
        f"{action.timeout.total_seconds():g} seconds, or 504.",
        responses={
            **NOT_FOUND,
            409: {"description": "The entity is not in a state this action runs in"},
            502: {"description": "The action ran and failed"},
            504: {"description": "No answer in time"},
        },
    )
    async def perform_action(
        session: SessionDep,
        principal: PrincipalDep,
        redis: RedisDep,
        entity: Operated,
        request: Request,
    ) -> Any:
        record(session, principal, f"action.{action.name}", target_kind=kind.name,
               target_id=entity.id, team_id=entity.team_id, ip=client_ip(request))  # fmt: skip
        with metrics.action_timer(redis, kind.name, action.name):
            return await actions.perform(session, redis, kind, entity.id, action)
