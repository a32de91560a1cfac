"""A whole system whose schedules run on a fast clock (``AEGIR_FAST_CLOCK``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.fixtures.services import create_database
from tests.fixtures.stack import Stack, running_stack

# One simulated hour per real second: a day of hourly slots in 24 s.
SPEED = 3600.0
# A slot found due within two simulated hours (two real seconds) of its time fires: room
# for a loaded machine; a later one is missed and handled by the schedule's policy.
GRACE_HOURS = 2


@dataclass
class FastStack:
    stack: Stack
    epoch: float

    def now(self) -> datetime:
        """The schedules' time, as every process of the stack computes it (app.clock)."""
        return datetime.fromtimestamp(self.epoch + (time.time() - self.epoch) * SPEED, UTC)

    def sleep_until(self, at: datetime) -> None:
        left = (at - self.now()).total_seconds() / SPEED
        if left > 0:
            time.sleep(left)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def fast_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastStack]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sched') / 'aegir.sqlite3'}"
    else:
        url = create_database(
            request.getfixturevalue("postgres_url"), f"aegir_sched_{uuid.uuid4().hex[:8]}"
        )
    epoch = time.time()
    settings = {
        "AEGIR_FAST_CLOCK": f"{epoch}:{SPEED}",
        "AEGIR_SCHEDULE_TICK": "0.05",
        "AEGIR_SCHEDULE_GRACE": str(GRACE_HOURS * 3600),
    }
    with running_stack(url, **settings) as system:
        yield FastStack(system, epoch)
