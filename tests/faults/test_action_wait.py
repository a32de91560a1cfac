"""An action waiting for its answer does not hold up the other writes of its API process.

On SQLite each API process lets one writing transaction through at a time (the write
gate, ``app/db.py``). An action writes its audit line, then waits up to its timeout for
the worker's answer: holding the gate meanwhile put every other POST of the process
behind it, and past ``AEGIR_SQLITE_WRITE_WAIT`` they were refused with 503.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.fixtures.stack import running_stack, wait_for


def test_writes_go_through_while_an_action_waits(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'aegir.sqlite3'}"
    # A write that cannot have its turn within half a second is refused: far less than
    # the slow action's wait (its 1 s timeout plus the reply margin).
    with running_stack(url, AEGIR_SQLITE_WRITE_WAIT="0.5") as stack, stack.client() as http:
        app = stack.make_app(http, "waits")
        answers: list[httpx.Response] = []

        def slow_action() -> None:
            with stack.client() as other:
                answers.append(other.post(f"/api/v1/testapps/{app['id']}/actions/slow"))

        waiting = threading.Thread(target=slow_action)
        waiting.start()
        # The action is waiting once its audit line is readable.
        wait_for(
            lambda: any(
                entry["action"] == "action.slow"
                for entry in http.get("/api/v1/audit", params={"action": "action.slow"}).json()[
                    "items"
                ]
            ),
            "the slow action's audit line",
        )
        created = [http.post("/api/v1/testapps", json={"name": f"meanwhile-{i}"}) for i in range(3)]
        waiting.join()
    assert [answer.status_code for answer in created] == [201, 201, 201], [
        answer.text for answer in created
    ]
    assert answers[0].status_code == 504
