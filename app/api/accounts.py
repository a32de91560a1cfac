"""Who am I; users, teams and members (site admins); my tokens; the audit log (admins)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app.api.access import SiteAdmin
from app.api.deps import Authenticated, Limit, Offset, PrincipalDep, SessionDep
from app.dispatch import accounts, views
from app.entities.audit import repository as audit
from app.entities.audit.schemas import AuditRead
from app.entities.team.schemas import MemberRead, MemberSet, TeamCreate, TeamRead
from app.entities.token import repository as tokens
from app.entities.token.schemas import TokenCreate, TokenCreated, TokenRead
from app.entities.user import repository as users
from app.entities.user.schemas import Me, UserCreate, UserRead
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["accounts"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}


@router.get("/me", response_model=Me, summary="Who I am, and my teams")
async def me(session: SessionDep, principal: PrincipalDep) -> Me:
    return await views.me(session, principal)


@router.get("/users", response_model=list[UserRead], summary="Users (site admins)")
async def list_users(session: SessionDep, admin: SiteAdmin) -> list[UserRead]:
    return [UserRead.model_validate(user) for user in await users.every(session)]


@router.post(
    "/users",
    response_model=UserRead,
    status_code=201,
    summary="Add a user (site admins)",
    responses={409: {"description": "The username is taken"}},
)
async def create_user(session: SessionDep, admin: SiteAdmin, body: UserCreate) -> UserRead:
    user = await accounts.create_user(session, admin, body.username, body.password, body.is_admin)
    return UserRead.model_validate(user)


@router.get("/teams", response_model=list[TeamRead], summary="Teams I can see, with members")
async def list_teams(session: SessionDep, principal: PrincipalDep) -> list[TeamRead]:
    return await views.team_list(session, principal)


@router.post(
    "/teams",
    response_model=TeamRead,
    status_code=201,
    summary="Add a team (site admins)",
    responses={409: {"description": "The name is taken"}},
)
async def create_team(session: SessionDep, admin: SiteAdmin, body: TeamCreate) -> TeamRead:
    team = await accounts.create_team(session, admin, body.name)
    return TeamRead(id=team.id, name=team.name, created_at=team.created_at)


@router.put(
    "/teams/{team_id}/members/{user_id}",
    response_model=MemberRead,
    responses=NOT_FOUND,
    summary="Add a member, or change their role (site admins)",
)
async def set_member(
    session: SessionDep,
    admin: SiteAdmin,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberSet,
) -> MemberRead:
    membership = await accounts.set_member(session, admin, team_id, user_id, body.role)
    user = await users.get_one(session, user_id)
    return MemberRead(user_id=user.id, username=user.username, role=membership.role)


@router.delete(
    "/teams/{team_id}/members/{user_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Remove a member (site admins)",
)
async def remove_member(
    session: SessionDep, admin: SiteAdmin, team_id: uuid.UUID, user_id: uuid.UUID
) -> Response:
    await accounts.remove_member(session, admin, team_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tokens", response_model=list[TokenRead], summary="My API tokens")
async def list_tokens(session: SessionDep, principal: PrincipalDep) -> list[TokenRead]:
    rows = await tokens.of_user(session, principal.user_id)
    return [TokenRead.model_validate(row) for row in rows]


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    summary="Create an API token (shown once)",
)
async def create_token(
    session: SessionDep, principal: PrincipalDep, body: TokenCreate
) -> TokenCreated:
    row, token = await accounts.create_own_token(
        session, principal, body.name, body.expires_in_days
    )
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=token)


@router.delete(
    "/tokens/{token_id}", status_code=204, responses=NOT_FOUND, summary="Revoke an API token"
)
async def revoke_token(
    session: SessionDep, principal: PrincipalDep, token_id: uuid.UUID
) -> Response:
    await accounts.revoke_token(session, principal, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=Page[AuditRead], summary="The audit log (site admins)")
async def audit_log(
    session: SessionDep,
    admin: SiteAdmin,
    action: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_.]+$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditRead]:
    rows, total = await audit.page(session, action, limit, offset)
    items = [AuditRead.model_validate(row) for row in rows]
    return Page[AuditRead](items=items, total=total, limit=limit, offset=offset)
