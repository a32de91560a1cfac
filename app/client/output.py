"""What the remote CLI prints: a table or a few lines for people, JSON with ``--json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def as_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], footer: str = ""
) -> None:
    """``columns``: (key, heading). Nested values show as ``a.b`` keys."""
    grid = Table(show_edge=False, box=None, pad_edge=False)
    for _key, heading in columns:
        grid.add_column(heading)
    for row in rows:
        grid.add_row(*(_cell(_dig(row, key)) for key, _heading in columns))
    console.print(grid)
    if footer:
        errors.print(footer, style="dim")


def listing(
    answer: dict[str, Any],
    columns: Sequence[tuple[str, str]],
    *,
    json: bool,
    noun: str = "",
    footer: str = "",
) -> None:
    """An answer with ``items`` (a page, a batch): the server's JSON with ``--json``, else
    its items as a table and ``footer`` below, or with ``noun`` "N of TOTAL noun"."""
    if json:
        as_json(answer)
        return
    if noun:
        footer = f"{len(answer['items'])} of {answer['total']} {noun}"
    table(answer["items"], columns, footer)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(label) for label, _ in pairs), default=0)
    for label, value in pairs:
        console.print(f"[bold]{label.ljust(width)}[/bold]  {_cell(value)}", highlight=False)


def _dig(row: dict[str, Any], key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)
