"""The in-process no-op task (``InProcess``, issue 12): no subprocess, but the whole way
a command's run goes: queue, claim, events, relay, stored log, finish, cancel."""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.stack import Stack, wait_for


def _follow(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    with stack.connect(f"/ws/runs/{run_id}?after=0") as ws:
        return [json.loads(message) for message in ws]


def test_a_no_op_run_streams_stores_and_ends_like_a_command(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "noop-lines")
        run = live.trigger(http, app, "noop", {"noop": {"lines": 1200}})
        messages = _follow(live, run["id"])
        lines = [line for m in messages if m["type"] == "log" for line in m["lines"]]
        assert [line["seq"] for line in lines] == list(range(1, 1201))
        assert lines[-1]["line"] == "line 1200"
        end = messages[-1]
        assert (end["status"], end["exit_code"], end["complete"]) == ("succeeded", 0, True)
        stored = live.run(http, run["id"])
        assert (stored["status"], stored["log_complete"]) == ("succeeded", True)
        assert [task["status"] for task in stored["tasks"]] == ["succeeded"]
        assert len(live.full_log(http, run["id"])) == 1200


def test_a_no_op_run_fails_with_its_code(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "noop-fails")
        run = live.trigger(http, app, "noop", {"noop": {"lines": 1, "exit_code": 4}})
        end = live.wait_status(http, run["id"], {"succeeded", "failed"})
        assert (end["status"], end["exit_code"]) == ("failed", 4)
        assert [task["status"] for task in end["tasks"]] == ["failed"]


def test_cancel_stops_a_no_op_run_and_the_next_one_starts(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "noop-cancel")
        first = live.trigger(http, app, "noop", {"noop": {"lines": 1, "sleep": 300}})
        wait_for(lambda: live.full_log(http, first["id"]), "the first run's line")
        # Queued behind it. Values left out would keep the task's current ones (a run
        # reads them when it starts): this one says it sleeps no more.
        second = live.trigger(http, app, "noop", {"noop": {"lines": 2, "sleep": 0}})
        assert http.post(f"/api/v1/runs/{first['id']}/cancel").status_code == 202
        end = live.wait_status(http, first["id"], {"cancelled", "failed", "succeeded"})
        assert (end["status"], end["exit_code"]) == ("cancelled", 130)
        assert "cancelled: the task was stopped" in [
            x["line"] for x in live.full_log(http, first["id"])
        ]
        assert live.wait_status(http, second["id"], {"succeeded"})["status"] == "succeeded"


def test_the_no_op_action_answers_within_the_request(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "noop-action")
        for _ in range(3):
            answer = http.post(f"/api/v1/testapps/{app['id']}/actions/noop")
            assert answer.status_code == 200, answer.text
            assert answer.json()["url"].endswith("/user/reset/1/one-time-token")
