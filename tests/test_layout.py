"""Where each rule lives: checked over the source, so a change that breaks it fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "workers", "relay", "executors", "bench", "plugins")
BUILDERS = frozenset({"select", "update", "insert", "delete"})
# A statement built by name: select(...), not a method such as dict.update(...).
BARE_CALL = re.compile(r"(?<![.\w])(select|update|insert|delete)\(")


def _sources() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "build" not in path.parts
    )


def _sql_builders_imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            names |= {alias.name for alias in node.names if alias.name in BUILDERS}
    return names


def test_every_query_is_built_in_a_repository() -> None:
    outside: list[str] = []
    for path in _sources():
        if path.name == "repository.py":
            continue
        text = path.read_text()
        imported = _sql_builders_imported(ast.parse(text))
        calls = {m.group(1) for m in BARE_CALL.finditer(text)}
        if imported or calls:
            where = path.relative_to(ROOT)
            outside.append(f"{where}: {', '.join(sorted(imported | calls))}")
    assert outside == [], "queries outside a repository.py:\n" + "\n".join(outside)


def test_the_active_and_final_statuses_are_defined_once() -> None:
    definitions = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(ACTIVE|FINAL|FINAL_STATUSES|ACTIVE_STATUSES)\s*[:=]", line)
    ]
    assert len(definitions) == 2, definitions
