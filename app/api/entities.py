"""One router per entity kind, typed from the kind's own models."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response, status

from app.api.access import entity_access
from app.api.deps import (
    Authenticated,
    Limit,
    NameFilter,
    Offset,
    PrincipalDep,
    RedisDep,
    SessionDep,
    client_ip,
)
from app.catalog.types import ActionType, EntityKind
from app.dispatch import actions, views
from app.dispatch import entities as entity_service
from app.dispatch.audit import record
from app.entities.entity import repository as entities
from app.entities.entity.models import Entity
from app.entities.entity.schemas import EntityUpdate, create_model_for, read_model
from app.entities.operation import repository as operations
from app.entities.operation.schemas import OperationSummary
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
    # This kind's entity of the path's id, which the one asking may see, or administer.
    Viewed = Annotated[Entity, entity_access(Role.viewer, kind)]
    Administered = Annotated[Entity, entity_access(Role.admin, kind)]

    @router.get("", response_model=Page[read], summary=f"List {kind.plural}")
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
        responses={409: {"description": "The name is taken"}},
    )
    async def create_entity(session: SessionDep, principal: PrincipalDep, body: create_body) -> Any:
        entity = await entity_service.create(session, principal, kind, body)
        return await views.entity_detail(session, principal, kind, entity)

    @router.get(
        "/{entity_id}", response_model=detail, responses=NOT_FOUND, summary=f"Get a {label}"
    )
    async def get_entity(session: SessionDep, principal: PrincipalDep, entity: Viewed) -> Any:
        return await views.entity_detail(session, principal, kind, entity)

    @router.patch(
        "/{entity_id}",
        response_model=detail,
        responses={**NOT_FOUND, 409: {"description": "The name is taken"}},
        summary=f"Change a {label}",
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
    )
    async def list_operations(session: SessionDep, entity: Viewed) -> Any:
        ops = await operations.for_entity(session, entity.id)
        return await views.operation_summaries(session, kind, ops)

    for action in kind.actions.values():
        _action_route(router, kind, action)
    return router


def _action_route(router: APIRouter, kind: EntityKind, action: ActionType) -> None:
    Operated = Annotated[Entity, entity_access(Role.operator, kind)]

    @router.post(
        f"/{{entity_id}}/actions/{action.name}",
        response_model=action.result,
        name=f"{kind.name}_{action.name}",
        summary=f"{action.label} ({kind.label.lower()} action)",
        description=f"{action.description} Answers within "
        f"{action.timeout.total_seconds():g} seconds, or 504.",
        responses={
            **NOT_FOUND,
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
        return await actions.perform(session, redis, kind, entity.id, action)
