"""A platform upgrade's run through the whole system (worker, relay, batch driver), with
sites never installed: each is skipped with why, one line each, then the summary. The
moves themselves run on the hosting tier (tests/hosting/test_upgrade.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.batches.helpers import show
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(path, json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_an_upgrade_skips_sites_never_installed_and_says_why(batch_stack: Stack) -> None:
    with batch_stack.client() as http:
        host = {"hostname": "up.example.com"}
        server = _post(http, "/api/v1/servers", {"name": "up.example.com", "fields": host})
        on_server = {"server": server["id"]}
        platforms = [
            _post(
                http,
                "/api/v1/platforms",
                {"name": name, "fields": {"root": f"/srv/{name}"}, "references": on_server},
            )
            for name in ("up-old", "up-new")
        ]
        on_old = {"platform": platforms[0]["id"], "db_server": server["id"]}
        for n in range(2):
            _post(http, "/api/v1/sites", {"name": f"up{n}.example.com", "references": on_old})
        run = batch_stack.trigger(http, platforms[0], "upgrade",
                                  {"upgrade": {"target_platform": "up-new"}})  # fmt: skip
        end = batch_stack.wait_status(http, run["id"], {"succeeded", "failed", "cancelled"}, 60)
        log = [line["line"] for line in batch_stack.full_log(http, run["id"])]
        batches = http.get("/api/v1/batches").json()["items"]
        batch = show(http, next(b["id"] for b in batches if b["parent_run_id"] == run["id"]))
    assert end["status"] == "succeeded", log
    assert log[1:] == [
        "up0.example.com: skipped: site up0.example.com is not set up yet; migrate needs it "
        "enabled or disabled first",
        "up1.example.com: skipped: site up1.example.com is not set up yet; migrate needs it "
        "enabled or disabled first",
        "summary: 0 moved, 0 rolled back, 2 skipped, 0 cancelled",
    ]
    assert (batch["status"], batch["counts"]) == ("succeeded", {"skipped": 2})
