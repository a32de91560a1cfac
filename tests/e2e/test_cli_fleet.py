"""The remote CLI's fleet commands against a running stack: schedules, batches and
notification targets, as an operator drives them from a terminal."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.test_cli_remote import Cli, cli  # noqa: F401 - the fixture
from tests.fixtures.stack import Stack


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver answering 204, keeping each body it got."""
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def test_a_schedule_is_created_paused_resumed_and_deleted(cli: Cli) -> None:  # noqa: F811
    cli("testapp", "create", "cli-sched")
    made = cli.json("schedules", "create", "testapp", "cli-sched", "noop", "--cron", "0 2 * * *",
                    "--timezone", "Europe/Paris", "--set", "noop.lines=1")  # fmt: skip
    assert "Europe/Paris" in made["preview"] and len(made["next"]) >= 1
    shown = cli("schedules", "show", made["id"]).stdout
    assert "0 2 * * *" in shown and "Europe/Paris" in shown
    assert cli.json("schedules", "pause", made["id"])["paused"] is True
    assert cli.json("schedules", "resume", made["id"])["paused"] is False
    assert made["id"] in [s["id"] for s in cli.json("schedules", "list")["items"]]
    assert cli.json("schedules", "slots", made["id"])["items"] == []
    said = cli("schedules", "create", "testapp", "cli-sched", "noop", "--cron", "61 * * * *",
               code=1).stderr  # fmt: skip
    assert "422" in said and "cron" in said
    cli("schedules", "delete", made["id"])
    assert "404" in cli("schedules", "show", made["id"], code=1).stderr


def test_a_batch_runs_over_named_entities_and_follows_to_its_end(cli: Cli) -> None:  # noqa: F811
    for name in ("cli-batch-a", "cli-batch-b", "cli-batch-c"):
        cli("testapp", "create", name)
    done = cli("batches", "run", "testapp", "noop", "-e", "cli-batch-a", "-e", "cli-batch-b",
               "-e", "cli-batch-c", "--set", "noop.lines=2", "--follow", "--json")  # fmt: skip
    batch = json.loads(done.stdout)
    assert batch["status"] == "succeeded"
    assert sorted(item["entity_name"] for item in batch["items"]) == [
        "cli-batch-a", "cli-batch-b", "cli-batch-c"]  # fmt: skip
    assert {item["status"] for item in batch["items"]} == {"succeeded"}
    assert batch["id"] in [b["id"] for b in cli.json("batches", "list")["items"]]
    failed = cli("batches", "run", "testapp", "noop", "-e", "cli-batch-a",
                 "--set", "noop.exit_code=3", "--follow", code=1)  # fmt: skip
    assert "▸ cli-batch-a: failed" in failed.stderr


def test_a_notification_target_is_tested_from_the_command_line(
    cli: Cli,  # noqa: F811
    live: Stack,
    receiver: tuple[str, list[bytes]],
) -> None:
    url, got = receiver
    with live.client() as http:
        team = next(t for t in http.get("/api/v1/teams").json() if t["name"] == "ops")
        body = {"team_id": team["id"], "name": "cli-hook", "kind": "webhook", "url": url,
                "secret": "a-long-signing-secret"}  # fmt: skip
        made = http.post("/api/v1/notification-targets", json=body)
        assert made.status_code == 201, made.text
    target = made.json()["id"]
    assert target in [t["id"] for t in cli.json("notifications", "list")["items"]]
    sent = cli.json("notifications", "test", target)
    assert sent["state"] == "delivered" and sent["tries"][-1]["code"] == 204
    assert len(got) == 1
    log = cli.json("notifications", "deliveries", target)["items"]
    assert log[0]["id"] == sent["id"]
    assert "a-long-signing-secret" not in cli("notifications", "show", target).stdout
