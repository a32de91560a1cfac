"""What operations staff read: Prometheus metrics that are the same whichever API process is
scraped, and JSON logs carrying the run id and the request id."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.fixtures.accounts import PASSWORD, csrf
from tests.fixtures.services import free_port
from tests.fixtures.stack import Stack, running_stack, wait_for


def _series(page: str) -> dict[str, float]:
    """Every sample of the page, read with Prometheus's own text parser, keyed as
    ``name{label="value",...}`` with the labels sorted."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def _scrape(url: str, token: str) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _series(response.text)


def _one(values: dict[str, float], pattern: str) -> float:
    found = [value for name, value in values.items() if re.fullmatch(pattern, name)]
    return found[0] if found else 0.0


@contextmanager
def _signed_in(url: str, username: str) -> Iterator[httpx.Client]:
    """A cookie-keeping client signed in through the /login form (the stack's accounts
    have the password ``Stack.create_account`` gives them)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        form = http.get("/login")
        data = {"username": username, "password": PASSWORD, "csrf_token": csrf(form.text)}
        assert http.post("/login", data=data).status_code == 303
        yield http


@pytest.fixture
def second_api(live: Stack) -> Iterator[str]:
    """Another API process on the same database and Redis."""
    port = free_port()
    live.start_process("api-2", AEGIR_PORT=str(port))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, "the second API")
    yield url
    live.kill("api-2")


def test_metrics_need_a_site_admin_or_the_metrics_token(live: Stack) -> None:
    assert httpx.get(f"{live.base_url}/metrics").status_code == 401
    viewer = live.create_account("metrics-viewer", role="viewer")
    refused = httpx.get(f"{live.base_url}/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert refused.status_code == 403


def test_two_api_processes_show_the_same_runs_actions_and_subscribers(
    live: Stack, second_api: str
) -> None:
    runs_done = (
        r'aegir_run_duration_seconds_count\{kind="testapp",operation="noop",status="succeeded"\}'
    )
    actions = r'aegir_action_seconds_count\{action="noop",kind="testapp",outcome="ok"\}'
    failed = r'aegir_action_seconds_count\{action="slow",kind="testapp",outcome="error"\}'
    before = _scrape(live.base_url, live.token)
    with live.client() as http:
        app = live.make_app(http, "metrics-app")
        run = live.trigger(http, app, "noop", {"noop": {"lines": 3}})
        live.wait_status(http, run["id"], {"succeeded"})
        for _ in range(2):
            assert http.post(f"/api/v1/testapps/{app['id']}/actions/noop").status_code == 200
        assert http.post(f"/api/v1/testapps/{app['id']}/actions/slow").status_code == 504
    # And one from the dashboard, as a click does: it counts the same.
    with _signed_in(live.base_url, "admin") as browser:
        page = browser.get(f"/testapps/{app['id']}")
        clicked = browser.post(
            f"/testapps/{app['id']}/actions/noop", data={"csrf_token": csrf(page.text)}
        )
        assert clicked.status_code in (200, 303), clicked.text  # its answer, or its link
    # A websocket held open on the second process counts on the first one's page too.
    # Per process: the second API has only ours; the first, ours and maybe others'.
    host = socket.gethostname()
    first = f'aegir_websocket_subscribers{{process="{host}-{live.processes["api"].pid}"}}'
    second = f'aegir_websocket_subscribers{{process="{host}-{live.processes["api-2"].pid}"}}'
    other = f"{second_api.replace('http://', 'ws://')}/ws/events"
    with live.connect("/ws/events"), connect(other, additional_headers=live.headers):

        def both_counted() -> list[dict[str, float]] | None:
            # The worker counts a run's duration just after recording its end, and the
            # API an action's latency just after answering, so either can read as done a
            # moment before its count moves.
            pages = [_scrape(url, live.token) for url in (live.base_url, second_api)]
            ran = _one(before, runs_done) + 1
            acted = _one(before, actions) + 3
            counted = all(
                p.get(first, 0) >= 1 and p.get(second) == 1 and _one(p, runs_done) >= ran
                and _one(p, actions) >= acted and _one(p, failed) > _one(before, failed)
                for p in pages
            )  # fmt: skip
            return pages if counted else None

        pages = wait_for(both_counted, "the sockets, the run and the actions counted on both pages")
    # A client that leaves is noticed at once, not when the next status would fail to
    # reach it (none comes here): the second API counts no socket again.
    wait_for(
        lambda: not _scrape(second_api, live.token).get(second),
        "the second API to notice that its socket's client left",
    )
    for page in pages:
        assert _one(page, runs_done) == _one(before, runs_done) + 1
        assert _one(page, actions) == _one(before, actions) + 3
        assert _one(page, failed) == _one(before, failed) + 1
        assert (
            page['aegir_runs{status="succeeded"}']
            >= before.get('aegir_runs{status="succeeded"}', 0) + 1
        )
        assert "aegir_queue_runs" in page and "aegir_queue_oldest_seconds" in page
        assert "aegir_relay_pending" in page and "aegir_relay_lag" in page
    assert pages[0]['aegir_runs{status="succeeded"}'] == pages[1]['aegir_runs{status="succeeded"}']


def test_a_queued_run_shows_in_the_queue_depth_and_age(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "metrics-queue")
        first = live.trigger(http, app, "noop", {"noop": {"lines": 1, "sleep": 300}})
        wait_for(lambda: live.full_log(http, first["id"]), "the first run's line")
        waiting = live.trigger(http, app, "noop", {"noop": {"lines": 1, "sleep": 0}})
        page = _scrape(live.base_url, live.token)
        assert page["aegir_queue_runs"] >= 1
        assert page["aegir_queue_oldest_seconds"] > 0
        assert page['aegir_runs{status="running"}'] >= 1
        http.post(f"/api/v1/runs/{first['id']}/cancel")
        live.wait_status(http, waiting["id"], {"succeeded"})


def test_json_logs_carry_the_run_id_and_the_request_id(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'aegir.sqlite3'}"
    with running_stack(url, AEGIR_LOG_FORMAT="json") as stack, stack.client() as http:
        app = stack.make_app(http, "json-logs")
        run = stack.trigger(http, app, "noop", {"noop": {"lines": 2}})
        stack.wait_status(http, run["id"], {"succeeded"})
        answer = http.get("/api/v1/runs", headers={"X-Request-ID": "req-from-the-test"})
        assert answer.headers["x-request-id"] == "req-from-the-test"
        made = http.get("/api/v1/catalog")
        assert len(made.headers["x-request-id"]) == 32  # one of ours when none was sent

        def worker_lines() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in stack.log("worker").splitlines() if line]
            return [line for line in lines if line.get("run_id") == run["id"]]

        ended = wait_for(lambda: [x for x in worker_lines() if "succeeded" in str(x["message"])],
                         "the worker's line about the run's end")  # fmt: skip
        assert ended[0]["level"] == "info" and ended[0]["logger"] == "workers.runner"

        def api_lines() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in stack.log("api").splitlines() if line]
            return [line for line in lines if line.get("request_id") == "req-from-the-test"]

        access = wait_for(api_lines, "the API's access line with the request id")
        assert "/api/v1/runs" in str(access[0]["message"])
        for name in ("api", "worker", "relay"):
            for line in stack.log(name).splitlines():
                if line:
                    json.loads(line)  # every line is one JSON object
