"""Websockets refuse strangers; values reach commands as data; secrets stay hidden."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from tests.fixtures.stack import Stack

HOSTILE = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "| touch {canary}",
    "&& touch {canary} &&",
    "--uri=evil; touch {canary}",
    "' \" ../../etc/passwd",
]


def _closed_with(socket_url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    with (
        connect(socket_url, additional_headers=headers or {}, open_timeout=10) as ws,
        pytest.raises(ConnectionClosedError) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_websockets_refuse_anonymous_clients(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "ws-anon")
        run = live.trigger(http, app, "run", {"first": {"lines": 1}})
    for path in (f"/ws/runs/{run['id']}", "/ws/events"):
        code, reason = _closed_with(f"{live.ws_url}{path}")
        assert code == 4401, (path, reason)
    bad = {"Authorization": "Bearer aegir_not-a-token"}
    assert _closed_with(f"{live.ws_url}/ws/events", bad)[0] == 4401


def test_another_team_cannot_follow_our_runs(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "ws-team")
        run = live.trigger(http, app, "run", {"first": {"lines": 1}})
        live.wait_status(http, run["id"], {"succeeded"})
    stranger = {"Authorization": f"Bearer {live.create_account('ws-stranger', team='other')}"}
    code, reason = _closed_with(f"{live.ws_url}/ws/runs/{run['id']}", stranger)
    assert code == 4404 and reason.startswith("no run with id")


def test_a_browser_session_from_another_site_is_refused(live: Stack) -> None:
    with httpx.Client(base_url=live.base_url) as browser:
        form = browser.get("/login").text
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        username = "ws-browser"
        live.create_account(username)
        signed = browser.post(
            "/login",
            data={"username": username, "password": "a-long-test-password", "csrf_token": csrf},
        )
        assert signed.status_code == 303
        cookie = {"Cookie": f"aegir_session={browser.cookies['aegir_session']}"}
    evil = {**cookie, "Origin": "https://evil.example.com"}
    assert _closed_with(f"{live.ws_url}/ws/events", evil)[0] == 4403
    with (
        connect(f"{live.ws_url}/ws/events", additional_headers=cookie, open_timeout=10) as ws,
        pytest.raises(TimeoutError),
    ):
        ws.recv(timeout=0.5)  # admitted: nothing to say yet


def test_hostile_values_reach_the_command_as_data_only(live: Stack, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    with live.client() as http:
        app = live.make_app(http, "injection")
        for template in HOSTILE:
            message = template.format(canary=canary)
            run = live.trigger(http, app, "echo", {"echo": {"message": message}})
            done = live.wait_status(http, run["id"], {"succeeded", "failed"})
            assert done["status"] == "succeeded"
            [line] = [x["line"] for x in live.full_log(http, run["id"]) if x["stream"] == "stdout"]
            assert line == f"argv={['--message=' + message]!r}", "one argv element, verbatim"
        for refused in ("line\nbreak", "nul\x00byte"):
            op = next(o["id"] for o in app["operations"] if o["type"] == "echo")
            answer = http.post(
                f"/api/v1/operations/{op}/runs", json={"values": {"echo": {"message": refused}}}
            )
            assert answer.status_code == 422
            assert answer.json()["detail"][0]["loc"] == ["body", "values", "echo", "message"]
    assert not canary.exists(), "nothing was executed"


def test_a_secret_is_masked_in_the_stored_log_and_absent_from_answers(live: Stack) -> None:
    secret = "hunter2-but-longer"
    with live.client() as http:
        app = live.make_app(http, "secretive")
        run = live.trigger(http, app, "run", {"first": {"lines": 0, "password": secret}})
        live.wait_status(http, run["id"], {"succeeded"})
        answers = [
            http.get(f"/api/v1/runs/{run['id']}").text,
            http.get("/api/v1/runs").text,
            json.dumps(live.full_log(http, run["id"])),
            http.get(f"/api/v1/testapps/{app['id']}").text,
        ] + [http.get(f"/api/v1/operations/{op['id']}").text for op in app["operations"]]
    assert all(secret not in answer for answer in answers)
    assert "the password is ****" in answers[2]
