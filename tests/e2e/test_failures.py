"""What happens when parts die: a worker, Redis, the relay. Nothing lost, nothing twice."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.fixtures.stack import LEASE, SWEEP, Stack, wait_for


def test_a_killed_worker_leaves_its_run_lost_and_not_run_twice(live: Stack, tmp_path: Path) -> None:
    record = tmp_path / "executions"
    with live.client() as http:
        app = live.make_app(http, "lost")
        values = {"first": {"lines": 2, "sleep": 60, "record": str(record)}}
        run = live.trigger(http, app, "run", values)
        wait_for(lambda: record.exists(), "the command to start")
        live.kill("worker", signal.SIGKILL)
        # The bound: the lease, plus a sweep, plus slack for a loaded machine.
        lost = live.wait_status(http, run["id"], {"lost"}, timeout=LEASE + SWEEP + 10)
        assert "not safe to re-run" in lost["error"]
        assert lost["finished_at"] is not None
        live.start_process("worker")
        # Values stay on the task: this run says it wants no sleep and no record.
        follower = live.trigger(http, app, "run", {"first": {"sleep": 0, "record": None}})
        live.wait_status(http, follower["id"], {"succeeded"})
    assert len(record.read_text().splitlines()) == 1, "executed once only"


def test_a_run_safe_to_rerun_is_run_again_after_its_worker_died(
    live: Stack, tmp_path: Path
) -> None:
    record = tmp_path / "executions"
    marker = tmp_path / "slow-once"
    with live.client() as http:
        app = live.make_app(http, "rerun")
        run = live.trigger(
            http, app, "safe", {"safe": {"lines": 1, "sleep": 4, "record": str(record)}}
        )
        wait_for(lambda: record.exists(), "the first attempt to start")
        live.kill("worker", signal.SIGKILL)
        marker.touch()
        live.start_process("worker")
        done = live.wait_status(http, run["id"], {"succeeded", "failed", "lost"}, timeout=60)
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2
    assert len(record.read_text().splitlines()) == 2


def test_a_run_triggered_while_redis_is_down_completes_when_it_is_back(live: Stack) -> None:
    with live.client() as http:
        app = live.make_app(http, "redis-down")
        live.redis.stop()
        try:
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"].startswith("error")
            run = live.trigger(http, app, "run", {"first": {"lines": 3}})
            assert run["status"] == "queued"
        finally:
            live.redis.start()
        done = live.wait_status(http, run["id"], {"succeeded", "failed"}, timeout=60)
        assert done["status"] == "succeeded"
        assert [x["line"] for x in live.full_log(http, run["id"])][:3] == [
            "line 1", "line 2", "line 3",
        ]  # fmt: skip
        assert http.get("/readyz").status_code == 200


def test_the_relay_killed_between_insert_and_ack_loses_and_repeats_nothing(
    live: Stack,
) -> None:
    live.kill("relay", signal.SIGTERM)
    live.start_process("relay", AEGIR_FAULT_RELAY_EXIT_AFTER_COMMITS="1")
    with live.client() as http:
        app = live.make_app(http, "relay-crash")
        run = live.trigger(http, app, "run", {"first": {"lines": 20000}})
        relay = live.processes["relay"]
        wait_for(lambda: relay.poll() is not None, "the relay to die as injected", timeout=60)
        assert relay.returncode == 70
        assert "fault injected" in live.log("relay")
        live.processes.pop("relay")
        live.start_process("relay")
        done = live.wait_status(http, run["id"], {"succeeded", "failed"}, timeout=60)
        assert done["status"] == "succeeded"
        lines = _complete_log(live, http, run["id"])
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    stdout = [line["line"] for line in lines if line["stream"] == "stdout"]
    assert stdout == [f"line {n}" for n in range(1, 20001)]


def _complete_log(stack: Stack, http: httpx.Client, run_id: str) -> list[dict[str, object]]:
    wait_for(lambda: stack.run(http, run_id)["log_complete"], "the log to be complete")
    return stack.full_log(http, run_id)
