"""Run ends reach the team's targets through the relay: signed webhooks, retries and
their log, a hung receiver that delays nothing, e-mail on a lost run, and exactly one
delivery per target and run with two relays, or with none while the run ended."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.stack import LEASE, SWEEP, Stack, wait_for
from tests.notifications.conftest import ATTEMPTS, add_target
from tests.notifications.receivers import Mailbox, Receiver, verify, webhook_receiver

pytestmark = pytest.mark.e2e

SECRET = "the-receivers-shared-secret"


def _hook(http: httpx.Client, receiver: Receiver, **filters: object) -> dict[str, Any]:
    return add_target(http, name="hook", kind="webhook", url=receiver.url, secret=SECRET, **filters)


def _deliveries(http: httpx.Client, target: dict[str, Any]) -> list[dict[str, Any]]:
    page = http.get(f"/api/v1/notification-targets/{target['id']}/deliveries").json()
    items: list[dict[str, Any]] = page["items"]
    return items


def _settled(http: httpx.Client, target: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The target's deliveries once ``count`` of them have ended (delivered or failed)."""

    def ended() -> list[dict[str, Any]] | None:
        items = [d for d in _deliveries(http, target) if d["state"] != "pending"]
        return items if len(items) >= count else None

    found: list[dict[str, Any]] = wait_for(ended, f"{count} deliveries to end", timeout=60)
    return found


def test_a_failed_run_reaches_the_webhook_signed(notified: Stack) -> None:
    with webhook_receiver() as receiver, notified.client() as http:
        target = _hook(http, receiver, statuses=["failed"])
        app = notified.make_app(http, "hooked")
        ok = notified.trigger(http, app, "run", {"first": {"lines": 1}})
        notified.wait_status(http, ok["id"], {"succeeded"})
        run = notified.trigger(http, app, "run", {"first": {"lines": 1, "exit_code": 3}})
        notified.wait_status(http, run["id"], {"failed"})
        [delivery] = _settled(http, target, 1)
    assert delivery["state"] == "delivered" and delivery["tries"][0]["code"] == 204
    [got] = receiver.received  # the succeeded run is filtered out
    assert verify(SECRET, got.headers, got.body)
    assert got.headers["X-Aegir-Event"] == "run.failed"
    assert got.headers["X-Aegir-Delivery"] == delivery["id"]
    body = orjson.loads(got.body)
    assert body["run"]["id"] == run["id"]
    assert body["run"]["status"] == "failed" and body["run"]["exit_code"] == 3
    assert body["run"]["operation"] == "run"
    assert body["entity"] == {"id": app["id"], "kind": "testapp", "name": "hooked"}
    assert body["team"]["name"] == "ops"
    assert body["run"]["url"] == f"{notified.base_url}/runs/{run['id']}"
    assert body["run"]["api_url"] == f"{notified.base_url}/api/v1/runs/{run['id']}"
    assert httpx.get(body["run"]["api_url"], headers=notified.headers).status_code == 200


def test_a_receiver_answering_500_is_retried_then_marked_failed(notified: Stack) -> None:
    with webhook_receiver() as receiver, notified.client() as http:
        receiver.code = 500
        target = _hook(http, receiver)
        app = notified.make_app(http, "refused")
        run = notified.trigger(http, app, "run", {"first": {"exit_code": 1}})
        notified.wait_status(http, run["id"], {"failed"})
        [delivery] = _settled(http, target, 1)
    assert delivery["state"] == "failed"
    assert delivery["attempts"] == ATTEMPTS
    assert [t["code"] for t in delivery["tries"]] == [500] * ATTEMPTS
    assert len(receiver.received) == ATTEMPTS
    assert len({r.headers["X-Aegir-Delivery"] for r in receiver.received}) == 1


def test_a_hung_receiver_delays_neither_the_next_run_nor_another_receiver(
    notified: Stack,
) -> None:
    with webhook_receiver() as hung, webhook_receiver() as other, notified.client() as http:
        hung.hang.set()
        stuck = _hook(http, hung)
        _hook(http, other)
        app = notified.make_app(http, "hung")
        # The same values for both (they live on the task): the second waits in the queue
        # behind the first, and starts once the first has ended.
        values = {"first": {"exit_code": 1, "sleep": 1}}
        first = notified.trigger(http, app, "run", values)
        second = notified.trigger(http, app, "run", values)
        notified.wait_status(http, first["id"], {"failed"})
        wait_for(lambda: hung.holding >= 1, "the hung receiver to hold a delivery")
        ended = notified.wait_status(http, second["id"], {"failed"})
        wait_for(lambda: len(other.received) == 2, "the other receiver to get both runs")
        # Nothing above waited for the hung deliveries: still open, none has ended.
        assert hung.holding >= 1
        assert all(d["state"] == "pending" for d in _deliveries(http, stuck))
        hung.released.set()
    assert ended["started_at"] is not None


def test_a_lost_run_is_told_by_email(notified: Stack, mailbox: Mailbox, tmp_path: Path) -> None:
    record = tmp_path / "executions"
    with notified.client() as http:
        target = add_target(http, name="on call", kind="email", addresses=["oncall@example.test"],
                   statuses=["lost"])  # fmt: skip
        app = notified.make_app(http, "mailed")
        run = notified.trigger(http, app, "run", {"first": {"sleep": 60, "record": str(record)}})
        wait_for(record.exists, "the command to start")
        notified.kill("worker", signal.SIGKILL)
        notified.wait_status(http, run["id"], {"lost"}, timeout=LEASE + SWEEP + 10)

        def mail() -> Any:
            return next((m for _to, m in mailbox.messages if run["id"] in m.get_content()), None)

        message = wait_for(mail, "the e-mail about the lost run")
        [delivery] = _settled(http, target, 1)
    assert delivery["state"] == "delivered"
    assert message["Subject"] == "[Aegir] testapp mailed: run lost"
    assert message["To"] == "oncall@example.test"
    assert f"{notified.base_url}/runs/{run['id']}" in message.get_content()


def test_two_relays_make_one_delivery_per_target_and_run(notified: Stack) -> None:
    notified.start_process("relay-2")
    with webhook_receiver() as one, webhook_receiver() as two, notified.client() as http:
        targets = [_hook(http, one), _hook(http, two)]
        runs = []
        for n in range(4):
            app = notified.make_app(http, f"twice-{n}")
            runs.append(notified.trigger(http, app, "run", {"first": {"exit_code": 1}}))
        for run in runs:
            notified.wait_status(http, run["id"], {"failed"})
        for target in targets:
            _settled(http, target, len(runs))
    expected = sorted(run["id"] for run in runs)
    for receiver in (one, two):
        got = sorted(orjson.loads(r.body)["run"]["id"] for r in receiver.received)
        assert got == expected


def test_a_run_that_ended_while_no_relay_ran_is_notified_later(notified: Stack) -> None:
    with webhook_receiver() as receiver, notified.client() as http:
        target = _hook(http, receiver)
        app = notified.make_app(http, "unrelayed")
        notified.kill("relay", signal.SIGKILL)
        run = notified.trigger(http, app, "run", {"first": {"exit_code": 2}})
        notified.wait_status(http, run["id"], {"failed"})
        assert receiver.received == []
        notified.start_process("relay")
        [delivery] = _settled(http, target, 1)
    assert delivery["run_id"] == run["id"] and delivery["state"] == "delivered"
    assert len(receiver.received) == 1
