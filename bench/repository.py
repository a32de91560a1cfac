"""The benchmarks' own writes: bulk rows straight into tables, as a seed needs them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.entities.team.models import Team


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(insert(table), rows)


async def insert_chunks(
    conn: AsyncConnection, table: Table, rows: Iterable[dict[str, Any]], size: int
) -> None:
    """``rows`` (an iterator, say a million log lines) in chunks of ``size``."""
    source = iter(rows)
    while chunk := [row for _, row in zip(range(size), source, strict=False)]:
        await conn.execute(insert(table), chunk)


async def team_id(conn: AsyncConnection, name: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await conn.scalar(select(Team.id).where(Team.name == name))
    return found
