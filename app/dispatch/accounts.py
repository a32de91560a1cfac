"""Users, teams, memberships, API tokens, and signing in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import after_commit, utcnow
from app.dispatch.audit import record
from app.entities.team import repository as teams
from app.entities.team.models import Membership, Role, Team
from app.entities.token import repository as tokens
from app.entities.token.models import ApiToken
from app.entities.user import repository as users
from app.entities.user.models import User
from app.errors import Conflict, InvalidInput, NotFound
from app.security.auth import forget_principals
from app.security.passwords import check_strength, hash_password, verify_password
from app.security.principal import Principal
from app.security.tokens import display_prefix, new_token, token_hash


async def create_user(
    session: AsyncSession, actor: Principal | str, username: str, password: str, is_admin: bool
) -> User:
    try:
        check_strength(password)
    except ValueError as error:
        raise InvalidInput.field(["body", "password"], str(error)) from None
    taken = f"a user named {username} already exists"
    if await users.username_taken(session, username):
        raise Conflict(taken)
    user = User(username=username, password_hash=await hash_password(password), is_admin=is_admin)
    try:
        await users.add(session, user)
    except IntegrityError:  # created meanwhile by another request
        raise Conflict(taken) from None
    record(session, actor, "user.created", target_kind="user", target_id=user.id,
           username=username, admin=is_admin)  # fmt: skip
    return user


async def create_team(session: AsyncSession, actor: Principal | str, name: str) -> Team:
    taken = f"a team named {name} already exists"
    if await teams.name_taken(session, name):
        raise Conflict(taken)
    try:
        team = await teams.add(session, Team(name=name))
    except IntegrityError:
        raise Conflict(taken) from None
    record(session, actor, "team.created", target_kind="team", target_id=team.id, name=name)
    return team


async def set_member(
    session: AsyncSession,
    actor: Principal | str,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
) -> Membership:
    if await teams.get(session, team_id) is None:
        raise NotFound(f"no team with id {team_id}")
    if await users.get(session, user_id) is None:
        raise NotFound(f"no user with id {user_id}")
    membership = await teams.membership(session, team_id, user_id)
    if membership is None:
        membership = Membership(team_id=team_id, user_id=user_id, role=role)
    else:
        membership.role = role
    await teams.add_membership(session, membership)
    _forget(session)
    record(session, actor, "team.member_set", target_kind="team", target_id=team_id,
           team_id=team_id, user=user_id, role=role)  # fmt: skip
    return membership


async def remove_member(
    session: AsyncSession, actor: Principal, team_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    if not await teams.remove_membership(session, team_id, user_id):
        raise NotFound("no such member of that team")
    _forget(session)
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
    await tokens.add(session, row)
    record(session, actor, "token.created", target_kind="token", target_id=row.id,
           user=user.username, name=name)  # fmt: skip
    return row, token


async def create_own_token(
    session: AsyncSession, principal: Principal, name: str, days: int
) -> tuple[ApiToken, str]:
    """A token for the signed-in user, from the API or the tokens page."""
    user = await users.get_one(session, principal.user_id)
    return await create_token(session, principal, user, name, timedelta(days=days))


async def revoke_token(session: AsyncSession, actor: Principal, token_id: uuid.UUID) -> ApiToken:
    row = await tokens.get(session, token_id)
    if row is None or (row.user_id != actor.user_id and not actor.is_admin):
        raise NotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        _forget(session)
        record(session, actor, "token.revoked", target_kind="token", target_id=row.id)
    return row


def _forget(session: AsyncSession) -> None:
    """Who a token is changed: this process's cached principals go now, and once more
    after the commit (a request may have cached the old answer in between)."""
    forget_principals()
    after_commit(session, _forget_later)


async def _forget_later() -> None:
    forget_principals()


async def teams_to_own(session: AsyncSession, principal: Principal) -> list[Team]:
    """The teams this user may file a new entity under (where they are admin), by name."""
    if principal.is_admin:
        return await teams.listed(session, None)
    mine = [team for team, role in principal.roles.items() if role == Role.admin]
    return await teams.listed(session, mine)


@dataclass(frozen=True)
class SignInRefused:
    """Why a sign-in failed, and how long to wait before saying so."""

    message: str
    status_code: int
    wait: float = 0.0


async def sign_in(
    session: AsyncSession, settings: Settings, username: str, password: str, ip: str | None
) -> User | SignInRefused:
    """The user, if the password is right and the account is not locked.

    Each failure in a row answers more slowly; past the limit the account waits.
    """
    user = await users.by_username(session, username)
    now = utcnow()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        record(session, username, "login.locked", target_kind="user", target_id=user.id, ip=ip)
        return SignInRefused(_locked(user.locked_until, now), 429)
    valid = await verify_password(user.password_hash if user else None, password)
    if user is None or not valid:
        failures = _count_failure(user, settings.login_max_failures, settings.login_lockout, now)
        record(session, username, "login.failed", target_kind="user", ip=ip)
        wait = min(0.1 * 2 ** max(failures - 1, 0), 2.0)
        return SignInRefused("Wrong user name or password.", 401, wait)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    record(session, username, "login", target_kind="user", target_id=user.id, ip=ip)
    return user


def _count_failure(user: User | None, limit: int, lockout: timedelta, now: datetime) -> int:
    if user is None:
        return 1
    user.failed_logins += 1
    failures = user.failed_logins
    if failures >= limit:
        user.locked_until = now + lockout
        user.failed_logins = 0
    return failures


def _locked(until: datetime, now: datetime) -> str:
    minutes = max(1, round((until - now).total_seconds() / 60))
    return f"Too many failed sign-ins: this account is locked for about {minutes} more minute(s)."
