"""Nightly backups with retention, for real: a schedule on a fast clock fires the backup
of a site on the test nginx and MariaDB, and after each successful backup a prune run
removes the archives beyond the retention, naming each in its log."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hosting import Hosting, MariaDBServer, NginxServer, PostgresServer
from tests.fixtures.stack import running_stack, wait_for
from tests.hosting.test_idempotence import run_twice

# A simulated day in 15 real seconds: room for a backup and a prune run each night.
SPEED = 86400 / 15
FIRINGS = 5
ENDED = {"succeeded", "failed", "lost", "cancelled"}


@pytest.fixture(scope="module")
def fast_hosting(
    tmp_path_factory: pytest.TempPathFactory,
    nginx: NginxServer,
    mariadb: MariaDBServer,
    site_postgres: PostgresServer,
) -> Iterator[Hosting]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('retention') / 'aegir.sqlite3'}"
    clock = {"AEGIR_FAST_CLOCK": f"{time.time()}:{SPEED}", "AEGIR_SCHEDULE_TICK": "0.1",
             "AEGIR_SCHEDULE_GRACE": "7200"}  # fmt: skip
    with running_stack(url, **clock) as stack:
        hosting = Hosting.create(
            stack, tmp_path_factory.mktemp("web"), nginx, mariadb, site_postgres
        )
        yield hosting
        hosting.http.close()


def _installed(hosting: Hosting, domain: str) -> dict[str, Any]:
    platform = hosting.platform(f"static-{domain.split('.')[0]}", page=domain)
    site = hosting.site(domain, platform)
    run = hosting.run(site, "install", {"database": {"engine": "mariadb"}})
    assert run["status"] == "succeeded", "\n".join(run["log"])
    return hosting.entity("sites", site["id"])


def _nightly(hosting: Hosting, site: dict[str, Any], **body: Any) -> dict[str, Any]:
    op = next(o["id"] for o in site["operations"] if o["type"] == "backup")
    body = {"name": f"nightly {site['name']}", "operation_id": op, "cron": "0 2 * * *", **body}
    response = hosting.http.post("/api/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


def _fired(hosting: Hosting, schedule: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"/api/v1/schedules/{schedule['id']}/slots"
    slots = hosting.http.get(url, params={"outcome": "fired", "limit": 200}).json()["items"]
    return sorted(slots, key=lambda slot: slot["slot_at"])


def _fired_times(hosting: Hosting, schedule: dict[str, Any], count: int) -> bool:
    return len(_fired(hosting, schedule)) >= count


def _after_firings(hosting: Hosting, schedules: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each schedule paused once it fired FIRINGS times; then every run and prune ended."""
    for schedule in schedules:
        wait_for(partial(_fired_times, hosting, schedule, FIRINGS), "the firings", 300, 0.1)
        hosting.http.post(f"/api/v1/schedules/{schedule['id']}/pause")
    done: list[list[dict[str, Any]]] = []
    for schedule in schedules:
        slots = _fired(hosting, schedule)[:FIRINGS]
        for slot in slots:
            run = hosting.stack.wait_status(hosting.http, slot["run_id"], ENDED, 120)
            assert run["status"] == "succeeded", run
        done.append(_with_prunes(hosting, schedule, len(slots)))
    return done


def _with_prunes(hosting: Hosting, schedule: dict[str, Any], count: int) -> list[dict[str, Any]]:
    def pruned() -> list[dict[str, Any]] | None:
        slots = _fired(hosting, schedule)[:count]
        return slots if all(slot["prune_run_id"] for slot in slots) else None

    slots: list[dict[str, Any]] = wait_for(pruned, "a prune run after each backup", 120)
    for slot in slots:
        run = hosting.stack.wait_status(hosting.http, slot["prune_run_id"], ENDED, 120)
        assert run["status"] == "succeeded", run
    return slots


def _archives(hosting: Hosting, domain: str) -> set[str]:
    return {path.name for path in (hosting.web / "backups" / domain).glob(f"{domain}-*.tar.gz")}


def _by_run(names: set[str], slots: list[dict[str, Any]]) -> list[str]:
    """Which slots' runs wrote these archives (their names end with the run's id)."""
    return [
        slot["run_id"][:8]
        for slot in slots
        if any(n.endswith(f"-{slot['run_id'][:8]}.tar.gz") for n in names)
    ]


def _removed(hosting: Hosting, slots: list[dict[str, Any]]) -> set[str]:
    """The archives the prune runs' logs say they removed."""
    names = set()
    for slot in slots:
        for line in hosting.stack.full_log(hosting.http, slot["prune_run_id"]):
            if match := re.search(r"removed (/\S+\.tar\.gz)", line["line"]):
                names.add(Path(match[1]).name)
    return names


@pytest.mark.timeout(600)  # five simulated nights of 15 s each, and two installs first
def test_nightly_backups_keep_the_newest_three_and_never_the_restore_forms_archive(
    fast_hosting: Hosting,
) -> None:
    hosting = fast_hosting
    plain = _installed(hosting, "keep3.example.test")
    named = _installed(hosting, "named.example.test")
    # The restore form of the second site names its first archive, taken by hand.
    first = hosting.run(named, "backup")
    assert first["status"] == "succeeded", "\n".join(first["log"])
    chosen = hosting.outputs(named, "backup", "backup_archive")["path"]
    schedules = [
        _nightly(hosting, plain, keep_last=3),
        _nightly(hosting, named, keep_last=1, values={"backup_archive": {"path": chosen}}),
    ]
    assert _archives(hosting, plain["name"]) == set()
    plain_slots, named_slots = _after_firings(hosting, schedules)
    runs = [slot["run_id"][:8] for slot in plain_slots]

    # Five nightly archives of the first site: the newest three stay, the other two are
    # gone, and the prune runs' logs name them.
    kept = _archives(hosting, plain["name"])
    assert len(kept) == 3 and _by_run(kept, plain_slots) == runs[2:]
    removed = _removed(hosting, plain_slots)
    assert len(removed) == 2 and _by_run(removed, plain_slots) == runs[:2]
    assert not removed & kept

    # Keep one: the newest stays, and so does the archive the restore form names.
    kept = _archives(hosting, named["name"])
    assert kept == {Path(chosen).name} | {
        n for n in kept if n.endswith(f"-{named_slots[-1]['run_id'][:8]}.tar.gz")
    }
    assert len(kept) == 2
    assert Path(chosen).name not in _removed(hosting, named_slots)
    assert len(_removed(hosting, named_slots)) == FIRINGS - 1


def test_pruning_by_hand_keeps_the_newest_and_a_second_prune_changes_nothing(
    fast_hosting: Hosting,
) -> None:
    hosting = fast_hosting
    site = _installed(hosting, "byhand.example.test")
    # Two, so that one is removed: the log helper counts a changed loop item as a task.
    for _ in range(2):
        assert hosting.run(site, "backup")["status"] == "succeeded"
    newest = Path(hosting.outputs(site, "backup", "backup_archive")["path"]).name
    first, second = run_twice(hosting, site, "prune_backups", {"prune": {"keep_last": 1}})
    assert (
        first
        == [
            "TASK [backup_prune : Remove the archives beyond the retention]",
        ]
        and second == []
    )
    assert _archives(hosting, site["name"]) == {newest}
    # By age: an archive older than keep_days goes, a younger one stays.
    assert hosting.run(site, "backup")["status"] == "succeeded"
    aged = hosting.web / "backups" / site["name"] / newest
    three_days_ago = time.time() - 3 * 86400
    os.utime(aged, (three_days_ago, three_days_ago))
    latest = Path(hosting.outputs(site, "backup", "backup_archive")["path"]).name
    by_age = hosting.run(site, "prune_backups", {"prune": {"keep_last": None, "keep_days": 2}})
    assert by_age["status"] == "succeeded", "\n".join(by_age["log"])
    assert _archives(hosting, site["name"]) == {latest}
    assert any(f"removed {aged}" in line for line in by_age["log"])
    # Without a rule, nothing is removed, and the run says why.
    site = hosting.entity("sites", site["id"])
    run = hosting.run(site, "prune_backups", {"prune": {"keep_days": None}})
    assert run["status"] == "failed"
    assert any("give keep_last, keep_days or both" in line for line in run["log"])
