"""A schedule that fires a batch: a platform's ``backup_sites`` on a cron is one batch of
its sites' backups per slot (the nightly backup of a whole platform)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.stack import wait_for
from tests.schedules.conftest import FastStack

pytestmark = pytest.mark.e2e


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(path, json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_a_platforms_backup_schedule_fires_one_batch_of_its_sites_per_slot(
    fast_stack: FastStack,
) -> None:
    stack = fast_stack.stack
    with stack.client() as http:
        host = {"name": "bs.example.com", "fields": {"hostname": "bs.example.com"}}
        server = _post(http, "/api/v1/servers", host)
        platform = _post(http, "/api/v1/platforms", {
            "name": "bs-platform", "fields": {"root": "/srv/bs"},
            "references": {"server": server["id"]}})  # fmt: skip
        for n in range(2):
            _post(http, "/api/v1/sites", {"name": f"bs{n}.example.com", "references": {
                "platform": platform["id"], "db_server": server["id"]}})  # fmt: skip
        operation = next(o for o in platform["operations"] if o["type"] == "backup_sites")
        schedule = _post(http, "/api/v1/schedules", {
            "name": "nightly backups of bs-platform", "cron": "0 * * * *", "timezone": "UTC",
            "operation_id": operation["id"],
            "values": {"backup_sites": {"description": "nightly", "concurrency": 2}}})  # fmt: skip

        def fired() -> dict[str, Any] | None:
            slots = http.get(f"/api/v1/schedules/{schedule['id']}/slots").json()["items"]
            return next((s for s in slots if s["outcome"] == "fired" and s["run_id"]), None)

        slot = wait_for(fired, "a fired slot", timeout=60)
        assert http.post(f"/api/v1/schedules/{schedule['id']}/pause").status_code == 200
        run = stack.wait_status(http, slot["run_id"], {"succeeded", "failed", "cancelled"}, 60)
        log = [line["line"] for line in stack.full_log(http, run["id"])]
        batches = http.get("/api/v1/batches").json()["items"]
        found = [b for b in batches if b["parent_run_id"] == run["id"]]
        assert found, (run["status"], log)
        batch = found[0]
    assert run["status"] == "succeeded", log
    assert (batch["kind"], batch["operation"]) == ("site", "backup")
    sites = sorted(line for line in log if line.startswith("bs"))
    assert [line.split(":")[0] for line in sites] == ["bs0.example.com", "bs1.example.com"]
    # Skipped for what they are (never installed), not for who asked: the schedule may.
    assert all("is not set up yet; back up needs it enabled or disabled" in x for x in sites), sites
    assert log[-1].startswith("summary: 0 backed up, 0 backup failed, 2 skipped")
