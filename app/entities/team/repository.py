"""Every query on teams and their memberships."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.team.models import Membership, Role, Team
from app.entities.user.models import User


async def get(session: AsyncSession, team_id: uuid.UUID) -> Team | None:
    return await session.get(Team, team_id)


async def by_name(session: AsyncSession, name: str) -> Team | None:
    found: Team | None = await session.scalar(select(Team).where(Team.name == name))
    return found


async def name_taken(session: AsyncSession, name: str) -> bool:
    query = select(Team.id).where(Team.name == name).limit(1)
    return (await session.execute(query)).first() is not None


async def listed(session: AsyncSession, teams: Collection[uuid.UUID] | None) -> list[Team]:
    """Teams by name; ``teams`` limits them to those ids (None: every team)."""
    query = select(Team).order_by(Team.name)
    if teams is not None:
        query = query.where(Team.id.in_(teams))
    return list(await session.scalars(query))


async def add(session: AsyncSession, team: Team) -> Team:
    """Store a new team; a taken name raises ``IntegrityError`` here, at the flush."""
    session.add(team)
    await session.flush()
    return team


async def roles_of(session: AsyncSession, user_id: uuid.UUID) -> dict[uuid.UUID, Role]:
    """The user's role in each of their teams."""
    rows = await session.execute(
        select(Membership.team_id, Membership.role).where(Membership.user_id == user_id)
    )
    return {team_id: Role(role) for team_id, role in rows}


async def teams_of(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str, Role]]:
    """(team id, team name, role) for each team of the user, by team name."""
    rows = await session.execute(
        select(Team.id, Team.name, Membership.role)
        .join(Membership, Membership.team_id == Team.id)
        .where(Membership.user_id == user_id)
        .order_by(Team.name)
    )
    return [(team_id, name, Role(role)) for team_id, name, role in rows]


async def members_by_team(
    session: AsyncSession, team_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, str, Role]]]:
    """(user id, user name, role) of each team's members, by user name."""
    rows = await session.execute(
        select(Membership.team_id, User.id, User.username, Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(Membership.team_id.in_(team_ids))
        .order_by(User.username)
    )
    found: dict[uuid.UUID, list[tuple[uuid.UUID, str, Role]]] = {}
    for team_id, user_id, username, role in rows:
        found.setdefault(team_id, []).append((user_id, username, Role(role)))
    return found


async def membership(
    session: AsyncSession, team_id: uuid.UUID, user_id: uuid.UUID
) -> Membership | None:
    return await session.get(Membership, (team_id, user_id))


async def add_membership(session: AsyncSession, membership: Membership) -> Membership:
    session.add(membership)
    await session.flush()
    return membership


async def remove_membership(session: AsyncSession, team_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Whether there was such a membership to remove."""
    result = await session.execute(
        delete(Membership).where(Membership.team_id == team_id, Membership.user_id == user_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
