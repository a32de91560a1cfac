"""No field without an effect (issue 16): every field of every entity kind and task type
in the catalogue, plugins included, is read by a role, a builder or the dispatch code.

"Read" is found the way a reviewer would grep for it, name by name:
- a role's tasks, handlers or templates (not its ``meta/argument_specs.yml``, which only
  declares) use it as ``something.NAME`` or ``something['NAME']``; an output is also
  read where a role writes it back (``NAME:`` under ``aegir_output``);
- Python of the catalogue's builders (variables functions, inventories, Kubernetes
  manifest builders), of the executors or of ``app/dispatch`` reads ``x.NAME`` or names
  ``"NAME"``: except where a builder only hands it on to the roles under the same name
  (``{"NAME": fields.NAME}``), which counts only if a role then reads it.
A field found nowhere fails the test with its name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from app.catalog.registry import ENTRY_POINT_GROUP, Catalog, build_catalog
from app.catalog.types import AnsibleRole, TaskFields, TaskType
from executors.ansible import ROLES_DIR

REPO = Path(__file__).resolve().parents[2]
# Where a field may be read, besides the roles: builders, executors, dispatch.
PYTHON = ("app/catalog/builtin", "app/dispatch", "executors")
# The modules whose dicts are the roles' variables: there, {"x": f.x} only hands x on.
ANSIBLE_BUILDERS = ("app/catalog/builtin/server.py", "app/catalog/builtin/platform.py",
                    "app/catalog/builtin/site/ansible.py")  # fmt: skip

# Fields known to have no effect yet, each with who makes it real.
NOT_YET: set[str] = set()


@dataclass
class Readers:
    """What the code reads, by name."""

    roles: set[str] = field(default_factory=set)
    outputs_written: set[str] = field(default_factory=set)
    python: set[str] = field(default_factory=set)
    handed_on: set[str] = field(default_factory=set)


def _role_files(catalog: Catalog) -> Iterator[Path]:
    dirs = {ROLES_DIR} | {
        t.executor.roles for t in catalog.tasks.values()
        if isinstance(t.executor, AnsibleRole) and t.executor.roles is not None
    }  # fmt: skip
    for roles in dirs:
        for sub in ("tasks", "handlers", "templates"):
            yield from (p for p in roles.glob(f"*/{sub}/**/*") if p.is_file())


def _read_roles(catalog: Catalog, readers: Readers) -> None:
    for path in _role_files(catalog):
        text = path.read_text()
        readers.roles |= set(re.findall(r"\.(\w+)", text))
        readers.roles |= set(re.findall(r"\[['\"](\w+)['\"]\]", text))
        for block in re.findall(r"aegir_output:\n((?:[ \t]+.*\n?)*)", text):
            readers.outputs_written |= set(re.findall(r"^\s+(\w+):", block, re.M))


def _python_files(catalog: Catalog) -> Iterator[tuple[Path, bool]]:
    for top in PYTHON:
        for path in (REPO / top).rglob("*.py"):
            yield path, str(path.relative_to(REPO)) in ANSIBLE_BUILDERS
    for point in entry_points(group=ENTRY_POINT_GROUP):  # a plugin's package builds
        if point.name in catalog.plugins:
            module = import_module(point.module)
            if module.__file__:
                yield from ((p, True) for p in Path(module.__file__).parent.rglob("*.py"))


def _handed_on(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """``{"x": f.x}``: x given to the roles under its own name, not used here."""
    parent = parents.get(node)
    if not isinstance(node, ast.Attribute) or not isinstance(parent, ast.Dict):
        return False
    keys = [k for k, v in zip(parent.keys, parent.values, strict=True) if v is node]
    return any(isinstance(k, ast.Constant) and k.value == node.attr for k in keys)


def _read_python(catalog: Catalog, readers: Readers) -> None:
    for path, builds_variables in _python_files(catalog):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        dict_keys = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    continue  # a model validating itself is no effect
                if builds_variables and _handed_on(node, parents):
                    readers.handed_on.add(node.attr)
                else:
                    readers.python.add(node.attr)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in dict_keys
            ):
                readers.python.add(node.value)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog()


@pytest.fixture(scope="module")
def readers(catalog: Catalog) -> Readers:
    found = Readers()
    _read_roles(catalog, found)
    _read_python(catalog, found)
    return found


def _fields(catalog: Catalog) -> Iterator[tuple[str, str, bool]]:
    """(where, name, is an output) for every field in the catalogue."""
    for kind in catalog.kinds.values():
        for name in kind.fields.model_fields:
            yield f"{kind.name}.{name}", name, False
    for task in catalog.tasks.values():
        yield from _task_fields(task)


def _task_fields(task: TaskType) -> Iterator[tuple[str, str, bool]]:
    for name in task.fields.model_fields:
        yield f"{task.name}.{name}", name, False
    for name in task.outputs.model_fields:
        yield f"{task.name} output {name}", name, True


def _unread(catalog: Catalog, readers: Readers) -> list[str]:
    return [
        where
        for where, name, output in _fields(catalog)
        if where not in NOT_YET
        and name not in readers.roles | readers.python
        and not (output and name in readers.outputs_written)
    ]


def test_every_field_in_the_catalogue_is_read_somewhere(catalog: Catalog, readers: Readers) -> None:
    unread = _unread(catalog, readers)
    assert unread == [], f"fields that nothing reads: {', '.join(unread)}"


class _ForgottenFields(TaskFields):
    zz_forgotten_knob: int = 0


def test_a_field_that_nothing_reads_is_named(readers: Readers) -> None:
    """The walk can fail: a task type whose role does not exist reads nothing."""

    def forgotten(catalog: Catalog) -> None:
        catalog.add_task(TaskType("zz_forgotten", "Forgotten", _ForgottenFields))

    catalog = build_catalog(extra=[forgotten])
    assert _unread(catalog, readers) == ["zz_forgotten.zz_forgotten_knob"]


def test_a_field_only_handed_on_to_the_roles_is_not_read_by_that(readers: Readers) -> None:
    """``{"aliases": fields.aliases}`` hands ``aliases`` on; the vhost template reads it."""
    assert "aliases" in readers.handed_on
    assert "aliases" in readers.roles


def test_the_allow_list_names_only_fields_of_the_catalogue(catalog: Catalog) -> None:
    assert {where for where, _, _ in _fields(catalog)} >= NOT_YET
