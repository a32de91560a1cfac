"""The catalogue: built-in types plus those that plugins add through entry points."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from importlib import import_module
from importlib.metadata import entry_points

from pydantic import BaseModel

from app.catalog.types import (
    ActionType,
    EntityKind,
    OperationType,
    TaskFields,
    TaskType,
    compose_values_model,
)

ENTRY_POINT_GROUP = "aegir.catalog"

Registrar = Callable[["Catalog"], None]


class CatalogError(Exception):
    """The catalogue is inconsistent: a bug in a built-in or a plugin, found at start."""


class Catalog:
    def __init__(self) -> None:
        self.tasks: dict[str, TaskType] = {}
        self.kinds: dict[str, EntityKind] = {}
        self.plugins: list[str] = []

    def add_task(self, *tasks: TaskType) -> None:
        for task in tasks:
            if task.name in self.tasks:
                raise CatalogError(f"task type {task.name!r} is defined twice")
            self.tasks[task.name] = task

    def add_kind(self, kind: EntityKind) -> None:
        if kind.name in self.kinds:
            raise CatalogError(f"entity kind {kind.name!r} is defined twice")
        self.kinds[kind.name] = kind

    def extend_kind(
        self,
        kind_name: str,
        *,
        tasks: dict[str, str] | None = None,
        operations: Iterable[OperationType] = (),
        actions: Iterable[ActionType] = (),
    ) -> None:
        """Add task keys, operations and actions to a kind defined elsewhere."""
        kind = self.kind(kind_name)
        for key, task_type in (tasks or {}).items():
            if kind.tasks.get(key, task_type) != task_type:
                raise CatalogError(f"{kind_name}: task key {key!r} already has another type")
            kind.tasks[key] = task_type
        for operation in operations:
            if operation.name in kind.operations:
                raise CatalogError(f"{kind_name}: operation {operation.name!r} exists")
            kind.operations[operation.name] = operation
        for action in actions:
            if action.name in kind.actions:
                raise CatalogError(f"{kind_name}: action {action.name!r} exists")
            kind.actions[action.name] = action

    def kind(self, name: str) -> EntityKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise CatalogError(f"unknown entity kind {name!r}") from None

    def check(self) -> None:
        for kind in self.kinds.values():
            self._check_kind(kind)

    def _check_kind(self, kind: EntityKind) -> None:
        for role, ref in kind.references.items():
            if ref.kind not in self.kinds:
                raise CatalogError(f"{kind.name}.{role} references unknown kind {ref.kind!r}")
        for key, task_type in kind.tasks.items():
            if task_type not in self.tasks:
                raise CatalogError(f"{kind.name}: task {key!r} has unknown type {task_type!r}")
        for op in kind.operations.values():
            for key in op.task_keys:
                if key not in kind.tasks:
                    raise CatalogError(f"{kind.name}.{op.name}: unknown task key {key!r}")
        for action in kind.actions.values():
            if action.task not in kind.tasks:
                raise CatalogError(f"{kind.name}.{action.name}: unknown task key {action.task!r}")

    def task_of(self, kind: EntityKind, key: str) -> TaskType:
        return self.tasks[kind.tasks[key]]

    def by_plural(self, plural: str) -> EntityKind | None:
        return next((k for k in self.kinds.values() if k.plural == plural), None)

    def values_model(self, kind_name: str, operation_name: str) -> type[BaseModel]:
        return _values_model(self, kind_name, operation_name)


@cache
def _values_model(catalog: Catalog, kind_name: str, operation_name: str) -> type[BaseModel]:
    kind = catalog.kind(kind_name)
    operation = kind.operations[operation_name]
    models: dict[str, type[TaskFields]] = {
        key: catalog.task_of(kind, key).fields for key in operation.task_keys
    }
    name = _camel(kind.name) + _camel(operation.name) + "Values"
    return compose_values_model(name, operation.task_keys, models)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def build_catalog(
    *, plugins: bool = True, extra: Iterable[Registrar] = (), skip: Iterable[str] = ()
) -> Catalog:
    from app.catalog.builtin import register_builtins

    catalog = Catalog()
    register_builtins(catalog)
    if plugins:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in skip:
                continue
            registrar: Registrar = point.load()
            registrar(catalog)
            catalog.plugins.append(point.name)
    for registrar in extra:
        registrar(catalog)
    catalog.check()
    return catalog


def load_registrar(path: str) -> Registrar:
    """``package.module:function`` to the registrar it names."""
    module_name, _, attribute = path.partition(":")
    registrar: Registrar = getattr(import_module(module_name), attribute or "register")
    return registrar


@lru_cache
def catalog_with(modules: tuple[str, ...] = ()) -> Catalog:
    """Built-ins, installed plugins (but those ``AEGIR_PLUGINS_SKIP`` names), and the
    registrars named in ``AEGIR_CATALOG_MODULES``."""
    from app.config import get_settings

    skip = tuple(get_settings().plugins_skip)
    return build_catalog(extra=[load_registrar(path) for path in modules], skip=skip)


def get_catalog() -> Catalog:
    from app.config import get_settings

    return catalog_with(tuple(get_settings().catalog_modules))
