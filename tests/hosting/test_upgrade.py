"""A platform upgrade on the test nginx: every site of a static platform migrated to
another through the batch machinery, each backed up first and rolled back if its move
fails; the upgrade's run logs each site as it ends and sums up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hosting import Hosting
from tests.fixtures.stack import wait_for

PASSWORD = "upgrade-db-pass"
ENDED = {"succeeded", "failed", "lost", "cancelled"}


def _installed(
    hosting: Hosting, domains: list[str], platform: dict[str, Any]
) -> list[dict[str, Any]]:
    """The sites, installed by one batch (its secret given once, sealed at rest)."""
    sites = [hosting.site(domain, platform) for domain in domains]
    values = {"database": {"engine": "mariadb", "db_password": PASSWORD}}
    body = {"kind": "site", "operation": "install", "ids": [s["id"] for s in sites],
            "values": values, "concurrency": 3}  # fmt: skip
    answer = hosting.http.post("/api/v1/batches", json=body)
    assert answer.status_code == 202, answer.text
    assert PASSWORD not in answer.text

    def finished() -> dict[str, Any] | None:
        batch: dict[str, Any] = hosting.http.get(f"/api/v1/batches/{answer.json()['id']}").json()
        return batch if batch["finished_at"] else None

    batch = wait_for(finished, "the installs", timeout=600, every=0.5)
    assert batch["status"] == "succeeded", batch
    return [hosting.entity("sites", s["id"]) for s in sites]


def _pin(hosting: Hosting, domain: str) -> Path:
    """Make the target never answer for ``domain``: a copy of its current vhost, loaded
    before Aegir's (nginx serves a name from its first server block), keeps answering
    from the old platform whatever Aegir writes; so its migrate fails its check and rolls
    back. The stand-in for a target that does not serve the site."""
    pin = hosting.nginx.sites_dir / f"00-pin-{domain}.conf"
    pin.write_text((hosting.nginx.sites_dir / f"{domain}.conf").read_text())
    hosting.nginx.reload()
    return pin


def _upgrade(hosting: Hosting, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    values = {"upgrade": {"target_platform": new["name"], "concurrency": 2}}
    answer = hosting.request(hosting.entity("platforms", old["id"]), "upgrade", values)
    assert answer.status_code == 202, answer.text
    run = hosting.stack.wait_status(hosting.http, answer.json()["id"], ENDED, 600)
    run["log"] = [line["line"] for line in hosting.stack.full_log(hosting.http, run["id"])]
    return run


def _platform_of(hosting: Hosting, site: dict[str, Any]) -> str:
    found: str = hosting.entity("sites", site["id"])["references"]["platform"]["name"]
    return found


@pytest.mark.timeout(900)
def test_upgrade_moves_every_site_and_rolls_back_the_one_that_fails(hosting: Hosting) -> None:
    old = hosting.platform("static-up-old", page="Old release")
    new = hosting.platform("static-up-new", page="New release")
    domains = [f"up{n}.example.test" for n in range(5)]
    *sites, resting = _installed(hosting, [*domains, "up-disabled.example.test"], old)
    assert hosting.run(resting, "disable")["status"] == "succeeded"
    pin = _pin(hosting, domains[2])

    try:
        run = _upgrade(hosting, old, new)
    finally:
        pin.unlink()
        hosting.nginx.reload()

    log = run["log"]
    assert run["status"] == "failed", "\n".join(log)  # one site did not move
    for n, domain in enumerate(domains):
        if n == 2:
            assert hosting.get(domain) == (200, "<h1>Old release</h1>\n")
            assert _platform_of(hosting, sites[n]) == old["name"]
        else:
            assert hosting.get(domain) == (200, "<h1>New release</h1>\n")
            assert _platform_of(hosting, sites[n]) == new["name"]
    assert _platform_of(hosting, resting) == old["name"]
    # One line per site as it ended, then the summary.
    assert sorted(line.split(":")[0] for line in log if ".example.test:" in line) == sorted(
        [*domains, "up-disabled.example.test"]
    )
    assert f"{domains[2]}: rolled back" in "\n".join(log)
    assert (
        "up-disabled.example.test: skipped: site up-disabled.example.test is disabled: "
        f"left on {old['name']}" in log
    )
    assert log[-1] == "summary: 4 moved, 1 rolled back, 1 skipped, 0 cancelled"
    _assert_batch(hosting, run)
    # Each moved site was backed up first, as migrate does.
    assert all(hosting.outputs(s, "migrate", "backup_archive")["path"] for s in sites)


def _assert_batch(hosting: Hosting, run: dict[str, Any]) -> None:
    """The batch behind the run: the site's own migrate runs, with their outcomes."""
    batches = hosting.http.get("/api/v1/batches").json()["items"]
    batch = next(b for b in batches if b["parent_run_id"] == run["id"])
    detail = wait_for(
        lambda: hosting.http.get(f"/api/v1/batches/{batch['id']}").json(), "the batch"
    )
    assert detail["counts"] == {"succeeded": 4, "failed": 1, "skipped": 1}
    rolled = next(i for i in detail["items"] if i["status"] == "failed")
    migrate = hosting.stack.run(hosting.http, rolled["run_id"])
    assert migrate["operation_type"] == "migrate"
    lines = [x["line"] for x in hosting.stack.full_log(hosting.http, migrate["id"])]
    assert any("failed and was rolled back" in line for line in lines)
