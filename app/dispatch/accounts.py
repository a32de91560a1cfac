"""Users, teams, memberships and API tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.dispatch.audit import record
from app.entities.team.models import Membership, Role, Team
from app.entities.token.models import ApiToken
from app.entities.user.models import User
from app.errors import Conflict, InvalidInput, NotFound
from app.security.passwords import check_strength, hash_password
from app.security.principal import Principal
from app.security.tokens import display_prefix, new_token, token_hash


async def create_user(
    session: AsyncSession, actor: Principal | str, username: str, password: str, is_admin: bool
) -> User:
    try:
        check_strength(password)
    except ValueError as error:
        raise InvalidInput.field(["body", "password"], str(error)) from None
    if await session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"a user named {username} already exists")
    user = User(username=username, password_hash=await hash_password(password), is_admin=is_admin)
    session.add(user)
    await _flush(session, f"a user named {username} already exists")
    record(session, actor, "user.created", target_kind="user", target_id=user.id,
           username=username, admin=is_admin)  # fmt: skip
    return user


async def create_team(session: AsyncSession, actor: Principal | str, name: str) -> Team:
    if await session.scalar(select(Team.id).where(Team.name == name)):
        raise Conflict(f"a team named {name} already exists")
    team = Team(name=name)
    session.add(team)
    await _flush(session, f"a team named {name} already exists")
    record(session, actor, "team.created", target_kind="team", target_id=team.id, name=name)
    return team


async def set_member(
    session: AsyncSession,
    actor: Principal | str,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
) -> Membership:
    if await session.get(Team, team_id) is None:
        raise NotFound(f"no team with id {team_id}")
    if await session.get(User, user_id) is None:
        raise InvalidInput.field(["path", "user_id"], f"no user with id {user_id}")
    membership = await session.get(Membership, (team_id, user_id))
    if membership is None:
        membership = Membership(team_id=team_id, user_id=user_id, role=role)
        session.add(membership)
    else:
        membership.role = role
    await session.flush()
    record(session, actor, "team.member_set", target_kind="team", target_id=team_id,
           team_id=team_id, user=user_id, role=role)  # fmt: skip
    return membership


async def remove_member(
    session: AsyncSession, actor: Principal, team_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    result = await session.execute(
        delete(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("no such member of that team")
    record(session, actor, "team.member_removed", target_kind="team", target_id=team_id,
           team_id=team_id, user=user_id)  # fmt: skip


async def create_token(
    session: AsyncSession, actor: Principal | str, user: User, name: str, lifetime: timedelta
) -> tuple[ApiToken, str]:
    """The token row and the token itself, which is shown this once and never stored."""
    token = new_token()
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_hash(token),
        prefix=display_prefix(token),
        expires_at=utcnow() + lifetime,
    )
    session.add(row)
    await session.flush()
    record(session, actor, "token.created", target_kind="token", target_id=row.id,
           user=user.username, name=name)  # fmt: skip
    return row, token


async def create_own_token(
    session: AsyncSession, principal: Principal, name: str, days: int
) -> tuple[ApiToken, str]:
    """A token for the signed-in user, from the API or the tokens page."""
    user = await session.get_one(User, principal.user_id)
    return await create_token(session, principal, user, name, timedelta(days=days))


async def revoke_token(session: AsyncSession, actor: Principal, token_id: uuid.UUID) -> ApiToken:
    row = await session.get(ApiToken, token_id)
    if row is None or (row.user_id != actor.user_id and not actor.is_admin):
        raise NotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, actor, "token.revoked", target_kind="token", target_id=row.id)
    return row


async def _flush(session: AsyncSession, conflict: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


async def teams_to_own(session: AsyncSession, principal: Principal) -> list[Team]:
    """The teams this user may file a new entity under (where they are admin), by name."""
    query = select(Team).order_by(Team.name)
    if not principal.is_admin:
        mine = [team for team, role in principal.roles.items() if role == Role.admin]
        query = query.where(Team.id.in_(mine))
    return list(await session.scalars(query))
