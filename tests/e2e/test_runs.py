"""Trigger -> queue -> worker -> executor -> relay -> stored and shown live."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from tests.fixtures.stack import Stack, wait_for


def _follow(stack: Stack, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """Every message of a run's websocket until the server closes it."""
    with stack.connect(f"/ws/runs/{run_id}?after={after}") as ws:
        return [json.loads(message) for message in ws]


def _lines(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for m in messages if m["type"] == "log" for line in m["lines"]]


def test_a_run_streams_its_lines_in_order_and_stores_its_end(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "streams")
        run = live.trigger(http, app, "run", {"first": {"lines": 500}})
        messages = _follow(live, run["id"])
        lines = _lines(messages)
        assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
        stdout = [line["line"] for line in lines if line["stream"] == "stdout"]
        assert stdout == [f"line {n}" for n in range(1, 501)]
        stderr = [line["line"] for line in lines if line["stream"] == "stderr"]
        assert stderr == ["to stderr"]
        end = messages[-1]
        assert end["type"] == "end"
        assert (end["status"], end["exit_code"], end["complete"]) == ("succeeded", 0, True)
        stored = live.run(http, run["id"])
        assert (stored["status"], stored["exit_code"], stored["log_complete"]) == (
            "succeeded", 0, True,
        )  # fmt: skip
        assert [task["status"] for task in stored["tasks"]] == ["succeeded"]
        assert len(live.full_log(http, run["id"])) == len(lines)


def test_a_failing_command_fails_the_run_with_its_code(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "fails")
        run = live.trigger(
            http, app, "two", {"first": {"lines": 1, "exit_code": 3}, "second": {"lines": 1}}
        )
        end = _follow(live, run["id"])[-1]
        assert (end["status"], end["exit_code"]) == ("failed", 3)
        stored = live.run(http, run["id"])
        assert stored["exit_code"] == 3
        assert [task["status"] for task in stored["tasks"]] == ["failed", "skipped"]


def test_outputs_are_stored_only_when_declared(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "outputs")
        values = {"first": {"lines": 0, "output": {"result": "done", "colour": "red"}}}
        run = live.trigger(http, app, "run", values)
        lines = _lines(_follow(live, run["id"]))
        refusal = [line["line"] for line in lines if line["stream"] == "system"]
        assert any("'colour' is not a declared output" in text for text in refusal), refusal
        op_id = next(o["id"] for o in app["operations"] if o["type"] == "two")
        # The "two" operation shares the "first" task: it sees what "run" wrote back.
        shared = http.get(f"/api/v1/operations/{op_id}").json()
        first = next(task for task in shared["tasks"] if task["key"] == "first")
        assert first["outputs"] == {"result": "done"}


def test_a_secret_printed_by_the_command_is_masked(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "masked")
        secret = "correct-horse-battery"
        run = live.trigger(http, app, "run", {"first": {"lines": 0, "password": secret}})
        lines = _lines(_follow(live, run["id"]))
        assert "the password is ****" in [line["line"] for line in lines]
        assert secret not in json.dumps(live.full_log(http, run["id"]))


def test_one_run_at_a_time_per_entity_in_order(live: Stack, tmp_path: Path) -> None:
    record = tmp_path / "executions"
    with live.client() as http:
        app = live.make_app(http, "serial")
        values = {"first": {"lines": 1, "sleep": 0.3, "record": str(record)}}
        runs = [live.trigger(http, app, "run", values)["id"] for _ in range(3)]
        for run_id in runs:
            live.wait_status(http, run_id, {"succeeded"})
        started = [live.run(http, run_id) for run_id in runs]
    assert [line.split()[0] for line in record.read_text().splitlines()] == runs
    for earlier, later in itertools.pairwise(started):
        assert earlier["finished_at"] <= later["started_at"], "runs of one entity overlapped"


def test_cancel_stops_the_whole_process_group(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "cancelled")
        run = live.trigger(
            http, app, "run", {"first": {"lines": 1, "sleep": 300, "children": True}}
        )
        lines = wait_for(
            lambda: [x for x in live.full_log(http, run["id"]) if x["line"].startswith("child ")],
            "the command to start its child",
        )
        child = int(lines[0]["line"].split()[1])
        answer = http.post(f"/api/v1/runs/{run['id']}/cancel")
        assert answer.status_code == 202
        assert answer.json()["status"] in {"cancelling", "cancelled"}
        end = live.wait_status(http, run["id"], {"cancelled", "failed", "succeeded"})
        assert end["status"] == "cancelled"
        assert wait_for(lambda: not _alive(child), "the child process to be gone", timeout=10)
        again = http.post(f"/api/v1/runs/{run['id']}/cancel")
        assert again.status_code == 409


def test_cancel_a_queued_run(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "queued-cancel")
        first = live.trigger(http, app, "run", {"first": {"lines": 1, "sleep": 2}})
        second = live.trigger(http, app, "run", {"first": {"lines": 1}})
        cancelled = http.post(f"/api/v1/runs/{second['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        live.wait_status(http, first["id"], {"succeeded"})
        assert live.run(http, second["id"])["status"] == "cancelled"
        assert live.full_log(http, second["id"]) == [], "a cancelled queued run never ran"
        log = http.get(f"/api/v1/runs/{second['id']}/log").json()
        assert (log["lines"], log["complete"]) == ([], True), "nothing more will come"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is gone for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
