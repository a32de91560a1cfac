"""The worker's claim (JSON) becomes the catalogue's models before a task runs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.catalog.builtin.platform import PlatformFields
from app.catalog.builtin.site import DatabaseFields
from app.catalog.inputs import InvalidInput
from app.catalog.registry import build_catalog
from app.dispatch.executor_input import typed_input
from tests.catalog import samples

CATALOG = build_catalog(plugins=False)


def test_fields_and_values_arrive_as_their_models_with_their_defaults() -> None:
    tasks = samples.tasks(CATALOG, "site", clone={})
    typed = typed_input(CATALOG, samples.site(), tasks, "database")
    assert isinstance(typed.values, DatabaseFields)
    assert typed.values.db_password == SecretStr("a-secret-password")
    platform = typed.entity.reference("platform").fields
    assert isinstance(platform, PlatformFields)
    assert platform.drush == "vendor/bin/drush"  # the model's default, not the executor's
    # A task never run, whose fields have no defaults, has no values yet.
    assert typed.tasks["clone"].values is None


def test_a_task_whose_values_no_longer_fit_its_model_does_not_run() -> None:
    tasks = samples.tasks(CATALOG, "site", clone={})
    with pytest.raises(InvalidInput, match="values of task clone are not valid: new_domain"):
        typed_input(CATALOG, samples.site(), tasks, "clone")


def test_an_entity_whose_fields_no_longer_fit_its_kind_does_not_run() -> None:
    site = samples.site()
    site["references"]["platform"]["fields"]["root"] = "relative/path"
    with pytest.raises(InvalidInput, match="fields of platform p are not valid: root"):
        typed_input(CATALOG, site, samples.tasks(CATALOG, "site"), "database")
