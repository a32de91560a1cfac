"""A running system per database backend whose relays notify a test SMTP server, with
short retry delays; each test's targets are deleted after it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.services import create_database
from tests.fixtures.stack import Stack, running_stack
from tests.notifications.receivers import Mailbox, smtp_server

ATTEMPTS = 3
# Long: the hung receiver's delivery stays open for the whole test that uses it.
TIMEOUT = 60


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def notify_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox
) -> Iterator[Stack]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('notify') / 'aegir.sqlite3'}"
    else:
        url = create_database(
            request.getfixturevalue("postgres_url"), f"aegir_notify_{uuid.uuid4().hex[:8]}"
        )
    settings = {
        "AEGIR_NOTIFY_POLL": "0.2",
        "AEGIR_NOTIFY_ATTEMPTS": str(ATTEMPTS),
        "AEGIR_NOTIFY_BACKOFF": "0.2",
        "AEGIR_NOTIFY_TIMEOUT": str(TIMEOUT),
        "AEGIR_SMTP_HOST": mailbox.host,
        "AEGIR_SMTP_PORT": str(mailbox.port),
        "AEGIR_SMTP_FROM": "aegir@example.test",
    }
    with running_stack(url, **settings) as system:
        yield system


@pytest.fixture
def notified(notify_stack: Stack) -> Iterator[Stack]:
    """The stack with its worker and relay running; the test's targets removed after."""
    for name in ("relay", "worker"):
        process = notify_stack.processes.get(name)
        if process is None or process.poll() is not None:
            notify_stack.processes.pop(name, None)
            notify_stack.start_process(name)
    yield notify_stack
    with notify_stack.client() as http:
        for target in http.get("/api/v1/notification-targets", params={"limit": 200}).json()[
            "items"
        ]:
            http.delete(f"/api/v1/notification-targets/{target['id']}")
    for name in list(notify_stack.processes):
        if name.startswith("relay-"):
            notify_stack.kill(name)


def add_target(http: httpx.Client, **fields: object) -> dict[str, object]:
    team = http.get("/api/v1/me").json()["teams"][0]["team_id"]
    response = http.post("/api/v1/notification-targets", json={"team_id": team, **fields})
    assert response.status_code == 201, response.text
    target: dict[str, object] = response.json()
    return target
