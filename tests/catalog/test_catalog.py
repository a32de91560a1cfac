"""The catalogue in code: composed schemas, shared tasks, plugins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.catalog.builtin.site import DatabaseFields, InstallFields
from app.catalog.registry import Catalog, CatalogError, build_catalog, get_catalog
from app.catalog.types import EntityFields, EntityKind, OperationType, TaskType


def test_install_schema_is_composed_from_its_tasks_models() -> None:
    catalog = get_catalog()
    schema = catalog.values_model("site", "install").model_json_schema()
    assert list(schema["properties"]) == [
        "database",
        "files",
        "settings",
        "vhost",
        "install",
        "certificate",
    ]
    assert schema["additionalProperties"] is False
    install_ref = schema["properties"]["install"]["$ref"].rsplit("/", 1)[-1]
    assert schema["$defs"][install_ref] == InstallFields.model_json_schema()
    database_ref = schema["properties"]["database"]["$ref"].rsplit("/", 1)[-1]
    assert (
        schema["$defs"][database_ref]["properties"]["db_password"]
        == (DatabaseFields.model_json_schema()["properties"]["db_password"])
    )


def test_composed_model_names_the_task_and_field_of_a_bad_value() -> None:
    model = get_catalog().values_model("site", "install")
    empty: dict[str, dict[str, str]] = {
        k: {} for k in ("database", "files", "settings", "vhost", "certificate")
    }
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**empty, "install": {"admin_email": "not an address"}})
    [error] = caught.value.errors()
    assert error["loc"] == ("install", "admin_email")


def test_backup_and_restore_share_the_backup_archive_key() -> None:
    site = get_catalog().kinds["site"]
    assert "backup_archive" in site.operations["backup"].steps
    assert "backup_archive" in site.operations["restore"].task_keys
    assert site.tasks["backup_archive"] == "backup_archive"


def test_secret_fields_are_known() -> None:
    catalog = get_catalog()
    assert catalog.tasks["site_database"].secret_fields() == {"db_password"}
    assert catalog.tasks["site_install"].secret_fields() == {"admin_password"}
    assert catalog.tasks["site_files"].secret_fields() == frozenset()


def test_the_example_plugin_is_loaded_from_its_entry_point() -> None:
    catalog = get_catalog()
    assert "example" in catalog.plugins
    assert "cache_server" in catalog.kinds
    assert "purge_cache" in catalog.kinds["site"].operations


def test_builtins_alone_without_plugins() -> None:
    catalog = build_catalog(plugins=False)
    assert set(catalog.kinds) == {
        "server",
        "platform",
        "site",
        "cluster",
        "project",
        "release",
        "environment",
    }
    assert "purge_cache" not in catalog.kinds["site"].operations


def _broken(catalog: Catalog) -> None:
    catalog.add_kind(
        EntityKind(
            name="thing",
            label="Thing",
            plural="things",
            fields=EntityFields,
            name_type=str,
            tasks={"go": "no_such_task"},
            operations={"go": OperationType("go", "Go", steps=("go",))},
        )
    )


def test_an_inconsistent_plugin_is_refused_at_start() -> None:
    with pytest.raises(CatalogError, match="no_such_task"):
        build_catalog(plugins=False, extra=[_broken])


def test_a_task_type_defined_twice_is_refused() -> None:
    def twice(catalog: Catalog) -> None:
        catalog.add_task(TaskType("server_verify", "Again"))

    with pytest.raises(CatalogError, match="twice"):
        build_catalog(plugins=False, extra=[twice])
