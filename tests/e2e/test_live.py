"""Websocket tails and actions, as clients see them."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.fixtures.stack import Stack


def _messages(stack: Stack, path: str) -> list[dict[str, Any]]:
    with stack.connect(path) as ws:
        return [json.loads(message) for message in ws]


def _seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [line["seq"] for m in messages if m["type"] == "log" for line in m["lines"]]


def test_resume_after_a_sequence_number(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "resume")
        run = live.trigger(http, app, "run", {"first": {"lines": 100}})
        live.wait_status(http, run["id"], {"succeeded"})
    everything = _seqs(_messages(live, f"/ws/runs/{run['id']}"))
    rest = _messages(live, f"/ws/runs/{run['id']}?after=60")
    assert _seqs(rest) == everything[60:]
    assert rest[-1]["type"] == "end" and rest[-1]["complete"] is True


def test_a_missing_run_closes_with_a_reason(live: Stack) -> None:
    with (
        live.connect("/ws/runs/00000000-0000-0000-0000-000000000000") as ws,
        pytest.raises(ConnectionClosedError) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404
    assert closed.value.rcvd.reason.startswith("no run with id")


def test_a_stalled_client_does_not_hold_up_another(live: Stack) -> None:
    """One client stops reading mid-run; the other still gets every line and the end."""
    lines = 100_000
    with live.client() as http:
        app = live.make_app(http, "stalled")
        run = live.trigger(http, app, "run", {"first": {"lines": lines, "sleep": 1}})
        with live.connect(f"/ws/runs/{run['id']}", max_queue=1, ping_interval=None) as stalled:
            # Shrink its socket buffer, then never read: the server's sends to it block.
            stalled.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader = _messages(live, f"/ws/runs/{run['id']}")
            # Leave without a closing handshake, as a vanished client does.
            stalled.socket.shutdown(socket.SHUT_RDWR)
        assert _seqs(reader) == list(range(1, lines + 2))  # and "to stderr"
        assert reader[-1]["type"] == "end"
        assert live.run(http, run["id"])["status"] == "succeeded"


def test_status_changes_stream_on_the_events_socket(live: Stack) -> None:
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        with live.connect("/ws/events") as ws:
            ready.set()
            for message in ws:
                seen.append(json.loads(message))
                if seen[-1].get("status") == "succeeded":
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    with live.client() as http:
        app = live.make_app(http, "events")
        run = live.trigger(http, app, "run", {"first": {"lines": 1}})
        live.wait_status(http, run["id"], {"succeeded"})
    listener.join(10)
    mine = [m["status"] for m in seen if m.get("run") == run["id"]]
    assert mine == ["queued", "running", "succeeded"]


def test_an_action_answers_within_the_request(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "hello")
        answer = http.post(f"/api/v1/testapps/{app['id']}/actions/hello")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"url": "http://hello/user/reset/1/one-time-token"}


def test_an_action_past_its_timeout_is_a_504_that_says_so(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "slow")
        answer = http.post(f"/api/v1/testapps/{app['id']}/actions/slow")
        assert answer.status_code == 504
        assert "no answer within 1 seconds" in answer.json()["detail"]


def test_an_action_without_a_worker_is_a_504(live: Stack) -> None:
    live.kill("worker")
    with live.client() as http:
        app = live.make_app(http, "no-worker")
        answer = http.post(f"/api/v1/testapps/{app['id']}/actions/hello")
        assert answer.status_code == 504
        assert "is a worker running?" in answer.json()["detail"]
