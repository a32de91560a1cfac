"""One running system per database backend for the batch tests (the e2e tier)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.services import create_database
from tests.fixtures.stack import Stack, running_stack


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def batch_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('batches') / 'aegir.sqlite3'}"
    else:
        name = f"aegir_batches_{uuid.uuid4().hex[:8]}"
        url = create_database(request.getfixturevalue("postgres_url"), name)
    with running_stack(url) as system:
        yield system
