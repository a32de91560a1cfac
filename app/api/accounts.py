"""Who am I; users, teams and members (site admins); my tokens; the audit log (admins)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import func, select

from app.api.deps import Authenticated, Limit, Offset, PrincipalDep, SessionDep
from app.dispatch import accounts
from app.entities.audit.models import AuditEvent
from app.entities.audit.schemas import AuditRead
from app.entities.team.models import Membership, Team
from app.entities.team.schemas import MemberRead, MemberSet, TeamCreate, TeamRead
from app.entities.token.models import ApiToken
from app.entities.token.schemas import TokenCreate, TokenCreated, TokenRead
from app.entities.user.models import User
from app.entities.user.schemas import Me, TeamRole, UserCreate, UserRead
from app.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["accounts"], dependencies=[Authenticated])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}


@router.get("/me", response_model=Me, summary="Who I am, and my teams")
async def me(session: SessionDep, principal: PrincipalDep) -> Me:
    user = await session.get_one(User, principal.user_id)
    rows = await session.execute(
        select(Team.id, Team.name, Membership.role)
        .join(Membership, Membership.team_id == Team.id)
        .where(Membership.user_id == user.id)
        .order_by(Team.name)
    )
    teams = [TeamRole(team_id=tid, team=name, role=role) for tid, name, role in rows]
    return Me(**UserRead.model_validate(user).model_dump(), teams=teams)


@router.get("/users", response_model=list[UserRead], summary="Users (site admins)")
async def list_users(session: SessionDep, principal: PrincipalDep) -> list[UserRead]:
    principal.require_admin()
    users = await session.scalars(select(User).order_by(User.username))
    return [UserRead.model_validate(user) for user in users]


@router.post("/users", response_model=UserRead, status_code=201, summary="Add a user (site admins)")
async def create_user(session: SessionDep, principal: PrincipalDep, body: UserCreate) -> UserRead:
    principal.require_admin()
    user = await accounts.create_user(
        session, principal, body.username, body.password, body.is_admin
    )
    return UserRead.model_validate(user)


@router.get("/teams", response_model=list[TeamRead], summary="Teams I can see, with members")
async def list_teams(session: SessionDep, principal: PrincipalDep) -> list[TeamRead]:
    query = select(Team).order_by(Team.name)
    if principal.visible_teams is not None:
        query = query.where(Team.id.in_(principal.visible_teams))
    teams = list(await session.scalars(query))
    rows = await session.execute(
        select(Membership.team_id, User.id, User.username, Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(Membership.team_id.in_([team.id for team in teams]))
        .order_by(User.username)
    )
    members: dict[uuid.UUID, list[MemberRead]] = {}
    for team_id, user_id, username, role in rows:
        members.setdefault(team_id, []).append(
            MemberRead(user_id=user_id, username=username, role=role)
        )
    return [
        TeamRead(id=t.id, name=t.name, created_at=t.created_at, members=members.get(t.id, []))
        for t in teams
    ]


@router.post("/teams", response_model=TeamRead, status_code=201, summary="Add a team (site admins)")
async def create_team(session: SessionDep, principal: PrincipalDep, body: TeamCreate) -> TeamRead:
    principal.require_admin()
    team = await accounts.create_team(session, principal, body.name)
    return TeamRead(id=team.id, name=team.name, created_at=team.created_at)


@router.put(
    "/teams/{team_id}/members/{user_id}",
    response_model=MemberRead,
    responses=NOT_FOUND,
    summary="Add a member, or change their role (site admins)",
)
async def set_member(
    session: SessionDep,
    principal: PrincipalDep,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberSet,
) -> MemberRead:
    principal.require_admin()
    membership = await accounts.set_member(session, principal, team_id, user_id, body.role)
    user = await session.get_one(User, user_id)
    return MemberRead(user_id=user.id, username=user.username, role=membership.role)


@router.delete(
    "/teams/{team_id}/members/{user_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Remove a member (site admins)",
)
async def remove_member(
    session: SessionDep, principal: PrincipalDep, team_id: uuid.UUID, user_id: uuid.UUID
) -> Response:
    principal.require_admin()
    await accounts.remove_member(session, principal, team_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tokens", response_model=list[TokenRead], summary="My API tokens")
async def list_tokens(session: SessionDep, principal: PrincipalDep) -> list[TokenRead]:
    rows = await session.scalars(
        select(ApiToken).where(ApiToken.user_id == principal.user_id).order_by(ApiToken.created_at)
    )
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
    principal: PrincipalDep,
    action: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_.]+$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditRead]:
    principal.require_admin()
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    items = [AuditRead.model_validate(row) for row in rows]
    return Page[AuditRead](items=items, total=total, limit=limit, offset=offset)
