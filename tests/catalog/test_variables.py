"""The catalogue drives the Ansible variables: every field a role or a builder reads is
a field of its model, and a builder reads the model, not a default of its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from app.catalog.builtin.platform import PlatformFields
from app.catalog.builtin.server import ServerFields
from app.catalog.builtin.site import (
    BackupArchiveFields,
    BackupArchiveOutputs,
    CloneFields,
    DatabaseFields,
    FilesFields,
    SiteFields,
    VhostFields,
)
from app.catalog.inputs import EntityInput
from app.catalog.registry import Catalog, build_catalog
from app.catalog.types import AnsibleRole
from executors.ansible import ROLES_DIR
from executors.ansible.variables import variables
from executors.base import TaskContext
from tests.catalog import samples

CATALOG = build_catalog()  # built-ins and the example plugin
SAMPLES = {"server": samples.server(), "platform": samples.platform(), "site": samples.site()}
SAMPLES["cache_server"] = samples.entity(
    "cache_server", "varnish1.example.com", {}, server=samples.server()
)


def _ansible_tasks(catalog: Catalog) -> Iterator[tuple[str, str, AnsibleRole]]:
    """(kind, task key, binding) for every task of a sample kind that runs a role."""
    for kind_name in SAMPLES:
        for key, task_type in catalog.kinds[kind_name].tasks.items():
            binding = catalog.tasks[task_type].executor
            if isinstance(binding, AnsibleRole):
                yield kind_name, key, binding


def _built(context: TaskContext, binding: AnsibleRole) -> dict[str, Any]:
    """What the catalogue builds for the task: the kind's hosts and variables, the binding's."""
    hosting = context.entity.kind.ansible
    assert hosting is not None, f"{context.entity.kind.name} declares no Ansible variables"
    hosting.hosts(context.entity)
    built = dict(hosting.variables(context.view))
    built.update(binding.variables(context.view) if binding.variables else {})
    return built


# --------------------------------------------------------------------------- roles


_READ = re.compile(
    r"(?<![\w.])(values|server|platform|site|db|db_server|clone|restore|target|purge|tls|"
    r"cache_server)\.([a-z_]+)(?:\.([a-z_]+))?"
)


def _reads(role_dir: Path) -> set[tuple[str, str, str | None]]:
    """(variable, attribute, sub-attribute) for each ``variable.attribute`` in a role."""
    found: set[tuple[str, str, str | None]] = set()
    for path in role_dir.rglob("*"):
        if path.suffix in (".yml", ".j2") and "meta" not in path.parts:
            found |= {(m[1], m[2], m[3]) for m in _READ.finditer(path.read_text())}
    return found


@pytest.mark.parametrize("kind,key,binding", list(_ansible_tasks(CATALOG)))
def test_every_variable_a_role_reads_is_built_from_its_models(
    kind: str, key: str, binding: AnsibleRole
) -> None:
    context = samples.context(CATALOG, SAMPLES[kind], key)
    built = _built(context, binding)
    fields = type(context.values).model_fields
    roles = binding.roles or ROLES_DIR
    missing = []
    for name, attribute, sub in _reads(roles / context.task_type):
        if name == "values":
            known = attribute in fields
        else:
            value = built.get(name, {})
            known = isinstance(value, dict) and attribute in value
            if known and sub is not None and isinstance(value[attribute], dict):
                known = sub in value[attribute]
        if not known:
            missing.append(".".join(part for part in (name, attribute, sub) if part))
    assert missing == [], f"role {context.task_type} reads what its models do not build"


def test_the_shared_role_reads_what_a_site_is_built_with() -> None:
    context = samples.context(CATALOG, SAMPLES["site"], "vhost")
    built = _built(context, AnsibleRole())
    missing = [
        f"{name}.{attribute}"
        for name, attribute, _ in _reads(ROLES_DIR / "aegir_common")
        if name != "values" and attribute not in built.get(name, {})
    ]
    assert missing == []


def test_secrets_stay_secret_until_the_variables_file() -> None:
    context = samples.context(CATALOG, SAMPLES["site"], "database")
    found = variables(context, AnsibleRole())
    assert found["db"]["password"] == SecretStr("a-secret-password")
    assert isinstance(found["values"]["db_password"], SecretStr)


# --------------------------------------------------------------------------- fields

# Fields no builder reads: the roles read them through ``values``, or no role does.
NOT_READ_BY_BUILDERS = {
    (BackupArchiveFields, "description"),
    (BackupArchiveOutputs, "size_bytes"),
    (BackupArchiveOutputs, "taken_at"),
}
MODELS: tuple[type[BaseModel], ...] = (
    ServerFields,
    PlatformFields,
    SiteFields,
    DatabaseFields,
    FilesFields,
    VhostFields,
    CloneFields,
    BackupArchiveFields,
    BackupArchiveOutputs,
)


def _instances(context: TaskContext, model: type[BaseModel]) -> Iterator[BaseModel]:
    """Every instance of ``model`` in the typed input: entity fields, task values, outputs."""

    def walk(entity: EntityInput) -> Iterator[BaseModel]:
        yield entity.fields
        for ref in entity.references.values():
            yield from walk(ref)

    found: list[BaseModel] = list(walk(context.entity))
    for task in context.tasks.values():
        found += [m for m in (task.values, task.outputs) if m is not None]
        for ref in task.refs.values():
            found += walk(ref)
    return (each for each in found if isinstance(each, model))


def _breaks_without(model: type[BaseModel], field: str) -> bool:
    """Whether some task's hosts or variables fail once the input's ``model`` instances
    lack ``field``: what a build does when the field is removed from the model."""
    for kind, key, binding in _ansible_tasks(CATALOG):
        context = samples.context(CATALOG, SAMPLES[kind], key)
        for instance in _instances(context, model):
            del instance.__dict__[field]
        try:
            _built(context, binding)
        except AttributeError as error:
            if field in str(error):
                return True
    return False


@pytest.mark.parametrize(
    "model,field", [(model, field) for model in MODELS for field in model.model_fields]
)
def test_a_builder_reads_each_field_from_its_model(model: type[BaseModel], field: str) -> None:
    expected = (model, field) not in NOT_READ_BY_BUILDERS
    assert _breaks_without(model, field) is expected


def test_the_builders_read_the_models_not_defaults_of_their_own() -> None:
    context = samples.context(CATALOG, SAMPLES["site"], "install")
    built = _built(context, AnsibleRole())
    assert (
        built["server"]["nginx_sites_dir"] == ServerFields.model_fields["nginx_sites_dir"].default
    )
    assert built["platform"]["drush"] == "/srv/p/vendor/bin/drush"
    assert built["site"]["port"] == 8080  # the vhost task's value, not the server's port
    assert built["db"]["host"] == ServerFields.model_fields["postgresql_host"].default
