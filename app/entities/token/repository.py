"""Every query on API tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.entities.token.models import ApiToken


async def get(session: AsyncSession, token_id: uuid.UUID) -> ApiToken | None:
    return await session.get(ApiToken, token_id)


async def by_hash(session: AsyncSession, token_hash: str) -> ApiToken | None:
    found: ApiToken | None = await session.scalar(
        select(ApiToken).where(ApiToken.token_hash == token_hash)
    )
    return found


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> list[ApiToken]:
    """The user's tokens, oldest first (revoked and expired ones included)."""
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at)
    return list(await session.scalars(query))


async def add(session: AsyncSession, token: ApiToken) -> ApiToken:
    session.add(token)
    await session.flush()
    return token


async def mark_used(session: AsyncSession, token_id: uuid.UUID, at: datetime) -> None:
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))
