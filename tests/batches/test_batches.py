"""Batches over the whole system (API, worker, relay with its batch driver), on SQLite
and PostgreSQL: bounded concurrency, stop after N failures or carry on, cancel, and
team scoping. The items run the test catalogue's in-process no-op, made to take a while
with its ``sleep`` field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.batches.helpers import make_apps, most_at_once, show, start_batch, wait_finished
from tests.fixtures.stack import Stack, wait_for

pytestmark = pytest.mark.e2e


def test_a_limit_of_two_never_has_more_than_two_running(batch_stack: Stack) -> None:
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "limit", 6)
        batch = start_batch(
            http, kind="testapp", operation="noop", ids=[a["id"] for a in apps],
            values={"noop": {"lines": 1, "sleep": 0.8}}, concurrency=2,
        )  # fmt: skip
        assert [i["entity_name"] for i in batch["items"]] == [a["name"] for a in apps]
        done = wait_finished(http, batch["id"])
        assert done["status"] == "succeeded"
        assert [i["status"] for i in done["items"]] == ["succeeded"] * 6
        runs = [batch_stack.run(http, item["run_id"]) for item in done["items"]]
    assert {run["status"] for run in runs} == {"succeeded"}
    # Two at a time, never three (the worker would take ten).
    assert most_at_once(runs) == 2
    assert done["summary_text"] == "6 succeeded"


def test_a_batch_stops_after_n_failures(batch_stack: Stack) -> None:
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "stops", 5)
        batch = start_batch(
            http, kind="testapp", operation="noop", ids=[a["id"] for a in apps],
            values={"noop": {"exit_code": 3}}, concurrency=1, max_failures=2,
        )  # fmt: skip
        done = wait_finished(http, batch["id"])
    assert done["status"] == "stopped"
    statuses = [i["status"] for i in done["items"]]
    assert statuses == ["failed", "failed", "skipped", "skipped", "skipped"]
    assert {i["reason"] for i in done["items"][2:]} == {"stopped after 2 failures"}
    assert [i["run_id"] is None for i in done["items"]] == [False, False, True, True, True]
    assert done["counts"] == {"failed": 2, "skipped": 3}


def test_a_batch_without_a_limit_carries_on_after_failures(batch_stack: Stack) -> None:
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "carry", 3)
        batch = start_batch(
            http, kind="testapp", operation="noop", ids=[a["id"] for a in apps],
            values={"noop": {"exit_code": 3}}, concurrency=2,
        )  # fmt: skip
        done = wait_finished(http, batch["id"])
    assert done["status"] == "failed"
    assert [i["status"] for i in done["items"]] == ["failed"] * 3
    assert done["summary_text"] == "3 failed"


def test_cancel_ends_pending_items_and_stops_running_ones(batch_stack: Stack) -> None:
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "cancel", 4)
        batch = start_batch(
            http, kind="testapp", operation="noop", ids=[a["id"] for a in apps],
            values={"noop": {"lines": 1, "sleep": 300}}, concurrency=2,
        )  # fmt: skip

        def two_running() -> bool:
            items = show(http, batch["id"])["items"]
            return [i["status"] for i in items] == ["running", "running", "pending", "pending"]

        wait_for(two_running, "two items running")
        running = [i["run_id"] for i in show(http, batch["id"])["items"][:2]]
        for run_id in running:
            batch_stack.wait_status(http, run_id, {"running"})
        answer = http.post(f"/api/v1/batches/{batch['id']}/cancel")
        assert answer.status_code == 202, answer.text
        # Pending items are cancelled at once, in the answer.
        assert [i["status"] for i in answer.json()["items"][2:]] == ["cancelled"] * 2
        assert answer.json()["status"] == "cancelled"
        done = wait_finished(http, batch["id"])
        runs = [batch_stack.run(http, run_id) for run_id in running]
        again = http.post(f"/api/v1/batches/{batch['id']}/cancel")
    assert [r["status"] for r in runs] == ["cancelled", "cancelled"]
    assert done["status"] == "cancelled"
    assert [i["status"] for i in done["items"]] == ["cancelled"] * 4
    assert again.status_code == 409


def test_bad_values_are_refused_naming_the_field_and_nothing_is_written(
    batch_stack: Stack,
) -> None:
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "invalid", 2)
        before = http.get("/api/v1/batches").json()["total"]
        answer = http.post("/api/v1/batches", json={
            "kind": "testapp", "operation": "noop", "ids": [a["id"] for a in apps],
            "values": {"noop": {"sleep": -1}},
        })  # fmt: skip
        after = http.get("/api/v1/batches").json()["total"]
    assert answer.status_code == 422
    error = answer.json()["detail"][0]
    assert error["loc"] == ["body", "values", "noop", "sleep"]
    assert "invalid-0" in error["msg"]
    assert after == before


def test_another_teams_operator_gets_404_on_our_batches(batch_stack: Stack) -> None:
    token = batch_stack.create_account("batch-stranger", team="strangers", role="operator")
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "ours", 1)
        batch = start_batch(http, kind="testapp", operation="noop", ids=[apps[0]["id"]], values={})
        wait_finished(http, batch["id"])
    stranger = {"Authorization": f"Bearer {token}"}
    with batch_stack.client() as http:
        http.headers.update(stranger)
        assert http.get(f"/api/v1/batches/{batch['id']}").status_code == 404
        assert http.post(f"/api/v1/batches/{batch['id']}/cancel").status_code == 404
        listed = http.get("/api/v1/batches").json()
        assert batch["id"] not in [b["id"] for b in listed["items"]]
        # Our entities are not theirs to batch either.
        answer = http.post("/api/v1/batches", json={
            "kind": "testapp", "operation": "noop", "ids": [apps[0]["id"]],
        })  # fmt: skip
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "ids", 0]


def _batch_messages(socket: ClientConnection, until_final: bool) -> list[dict[str, Any]]:
    """The batch messages a /ws/events client gets (until the batch's end, or a quiet 3 s)."""
    found: list[dict[str, Any]] = []
    while True:
        try:
            message = json.loads(socket.recv(timeout=3 if not until_final else 30))
        except TimeoutError:
            return found
        if message.get("type") == "batch":
            found.append(message)
            if until_final and message["status"] != "running":
                return found


def test_batch_changes_reach_its_team_live_and_no_other(batch_stack: Stack) -> None:
    token = batch_stack.create_account("batch-watcher", team="watchers", role="operator")
    with batch_stack.client() as http:
        apps = make_apps(batch_stack, http, "watched", 2)
        with (
            batch_stack.connect("/ws/events") as ours,
            connect(f"{batch_stack.ws_url}/ws/events", open_timeout=10,
                    additional_headers={"Authorization": f"Bearer {token}"}) as theirs,
        ):  # fmt: skip
            batch = start_batch(http, kind="testapp", operation="noop", ids=[a["id"] for a in apps])
            seen = _batch_messages(ours, until_final=True)
            unseen = _batch_messages(theirs, until_final=False)
    assert {m["batch"] for m in seen} == {batch["id"]}
    assert seen[-1]["status"] == "succeeded"
    assert seen[-1]["counts"] == {"succeeded": 2}
    assert unseen == []
