"""Every query on users."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.user.models import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_one(session: AsyncSession, user_id: uuid.UUID) -> User:
    """A user known to exist (the signed-in one, say)."""
    return await session.get_one(User, user_id)


async def by_username(session: AsyncSession, username: str) -> User | None:
    found: User | None = await session.scalar(select(User).where(User.username == username))
    return found


async def username_taken(session: AsyncSession, username: str) -> bool:
    query = select(User.id).where(User.username == username).limit(1)
    return (await session.execute(query)).first() is not None


async def any_exists(session: AsyncSession) -> bool:
    return (await session.execute(select(User.id).limit(1))).first() is not None


async def every(session: AsyncSession) -> list[User]:
    """Every user, by user name."""
    return list(await session.scalars(select(User).order_by(User.username)))


async def add(session: AsyncSession, user: User) -> User:
    """Store a new user; a taken name raises ``IntegrityError`` here, at the flush."""
    session.add(user)
    await session.flush()
    return user
