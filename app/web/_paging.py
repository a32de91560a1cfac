"""Numbered pages of a dashboard list: the ``?page=`` parameter, the rows a page skips,
and what the pager under the list shows."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

PAGE_SIZE = 50
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


def offset(page: int, size: int = PAGE_SIZE) -> int:
    """The rows before page ``page`` (counted from 1)."""
    return (page - 1) * size


def pager(page: int, total: int, size: int = PAGE_SIZE) -> dict[str, int]:
    """The pager's values for a page template: the total, this page, and how many pages
    there are (one, even for an empty list)."""
    return {"total": total, "page": page, "pages": max(1, -(-total // size))}
