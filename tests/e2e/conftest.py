"""One running system per database backend, in a database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.services import create_database
from tests.fixtures.stack import Stack, running_stack


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('stack') / 'aegir.sqlite3'}"
    else:
        # A name of its own: tests/faults/ has a stack of its own from this fixture.
        name = f"aegir_stack_{uuid.uuid4().hex[:8]}"
        url = create_database(request.getfixturevalue("postgres_url"), name)
    with running_stack(url) as system:
        yield system


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    """The stack with its worker and relay running, whatever the last test killed."""
    for name in ("relay", "worker"):
        process = stack.processes.get(name)
        if process is None or process.poll() is not None:
            stack.processes.pop(name, None)
            stack.start_process(name)
    yield stack
