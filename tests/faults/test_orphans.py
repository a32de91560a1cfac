"""A worker dies, or is stopped, in the middle of a run: nothing of the run goes on unseen.

Each test kills or stops the real worker process while a real command (or a real
playbook) runs, and reads what the processes themselves noted (``task.py probe``):
which processes each attempt started, and which of an earlier attempt's were still
alive when the next attempt started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from executors import processes
from executors.shepherd import exists
from tests.fixtures.stack import LEASE, SWEEP, Stack, wait_for

# A lost worker is noticed within the lease plus a sweep; slack for a loaded machine.
SETTLED_WITHIN = LEASE + SWEEP + 15


def _pids(path: Path) -> list[int]:
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def _attempts(path: Path) -> list[dict[str, Any]]:
    log = Path(f"{path}.log")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _ensure_worker(stack: Stack) -> None:
    process = stack.processes.get("worker")
    if process is None or process.poll() is not None:
        stack.processes.pop("worker", None)
        stack.start_process("worker")


def _shepherds(stack: Stack, run_id: str) -> list[int]:
    """The shepherds of this run's commands, by their records (other runs of the shared
    stack may have left records of processes long gone, whose pids may be reused)."""
    records = processes.records_of_run(stack.root / "var" / "work", run_id)
    return [int(path.read_text().split()[0]) for path in records]


def _said(stack: Stack, http: httpx.Client, run_id: str, text: str) -> bool:
    """The run's stored log has a line holding ``text``."""
    return any(text in line["line"] for line in stack.full_log(http, run_id))


def _lines(stack: Stack, http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    wait_for(lambda: stack.run(http, run_id)["log_complete"], "the log to be complete")
    return stack.full_log(http, run_id)


@pytest.mark.parametrize("operation", ["probe", "probe_playbook"])
def test_a_killed_workers_processes_are_gone_before_the_run_is_run_again(
    live: Stack, tmp_path: Path, operation: str
) -> None:
    """Fault: SIGKILL to the worker while a command (or ansible-playbook, its module's
    Python and what that runs) is going, with a child and a stray in its own session.
    Checked: within the lease plus a sweep none of attempt 1's processes is alive; the
    run is run again (safe to re-run) and attempt 2 found none of them alive when it
    started; the log says, between the attempts, that attempt 1 was lost and why; the
    log is complete, numbered without gap; the run keeps the lost attempt."""
    pids = tmp_path / "pids"
    # A line each attempt logs as it starts (Ansible shows a command's output at its end).
    marker = "attempt started" if operation == "probe" else "Run the probe"
    with live.client() as http:
        app = live.make_app(http, f"orphans-{operation.replace('_', '-')}")
        run = live.trigger(http, app, operation, {operation: {"pids": str(pids), "sleep": 120}})
        wait_for(lambda: _said(live, http, run["id"], marker), "attempt 1 to log", 60)
        wait_for(lambda: _pids(pids), "attempt 1 to start its processes", timeout=60)
        first = _pids(pids)
        assert all(exists(pid) for pid in first)
        live.kill("worker", signal.SIGKILL)
        wait_for(
            lambda: not any(exists(pid) for pid in first),
            "attempt 1's processes to be gone",
            timeout=SETTLED_WITHIN,
        )
        live.start_process("worker")
        done = live.wait_status(http, run["id"], {"succeeded", "failed", "lost"}, timeout=90)
        lines = _lines(live, http, run["id"])
    assert (done["status"], done["attempt"]) == ("succeeded", 2)
    attempts = _attempts(pids)
    assert len(attempts) == 2
    assert attempts[1]["alive_before"] == [], "attempt 2 started beside attempt 1's processes"
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    texts = [line["line"] for line in lines]
    lost = next(i for i, text in enumerate(texts) if text.startswith("attempt 1 was lost at"))
    started = [i for i, text in enumerate(texts) if marker in text]
    assert started[0] < lost < started[1], "the lost line sits between the attempts"
    assert "worker gone" in texts[lost]
    [kept] = done["lost_attempts"]
    assert kept["attempt"] == 1 and "worker gone" in kept["why"]


def test_the_sweeper_stops_what_a_killed_shepherd_left(live: Stack, tmp_path: Path) -> None:
    """Fault: SIGKILL to the worker AND to the command's shepherd at once, so nothing on
    the machine noticed. Checked: the sweeper finds the stray (a process in a session of
    its own, whose parent is gone) by the run's tag, stops it before it settles the run,
    and the lost line says it stopped processes."""
    pids = tmp_path / "pids"
    with live.client() as http:
        app = live.make_app(http, "orphans-shepherd")
        run = live.trigger(http, app, "probe", {"probe": {"pids": str(pids), "sleep": 120}})
        wait_for(lambda: _pids(pids), "attempt 1 to start its processes", timeout=60)
        first = _pids(pids)
        shepherds = _shepherds(live, run["id"])
        assert shepherds, "the command runs under a shepherd"
        worker = live.processes.pop("worker")
        os.kill(worker.pid, signal.SIGKILL)
        for pid in shepherds:
            # Its worker's death may have reached it first (its parent-death signal): then
            # it stopped the stray itself, which the assertion below says.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.wait(30)
        stray = first[2]
        assert exists(stray), "a stray outlives its shepherd until the sweeper comes"
        wait_for(lambda: not exists(stray), "the sweeper to stop the stray", SETTLED_WITHIN)
        live.start_process("worker")
        done = live.wait_status(http, run["id"], {"succeeded", "failed", "lost"}, timeout=90)
        lines = [line["line"] for line in _lines(live, http, run["id"])]
    assert done["status"] == "succeeded"
    assert _attempts(pids)[1]["alive_before"] == []
    [lost] = [line for line in lines if line.startswith("attempt 1 was lost at")]
    assert "process" in lost and "of it stopped" in lost


def test_a_task_that_kills_its_worker_every_time_ends_lost(live: Stack, tmp_path: Path) -> None:
    """Fault: the task SIGKILLs its own worker on every attempt (the worker is restarted
    each time, as a supervisor would). Checked: the run ends ``lost`` after the allowed
    attempts (3), never looping; each attempt's loss is kept and said in the log, and
    the log is complete."""
    pids = tmp_path / "pids"
    with live.client() as http:
        app = live.make_app(http, "kills-its-worker")
        values = {"probe": {"pids": str(pids), "sleep": 0, "kill_worker": 1}}
        run = live.trigger(http, app, "probe", values)

        def ended() -> dict[str, Any] | None:
            _ensure_worker(live)
            found = live.run(http, run["id"])
            return found if found["status"] in {"succeeded", "failed", "lost"} else None

        done = wait_for(ended, "the run to end", timeout=4 * SETTLED_WITHIN, every=0.2)
        lines = [line["line"] for line in _lines(live, http, run["id"])]
    assert (done["status"], done["attempt"]) == ("lost", 3)
    assert "3 attempts" in done["error"]
    assert [kept["attempt"] for kept in done["lost_attempts"]] == [1, 2, 3]
    assert sum(line.startswith("attempt ") and " was lost at " in line for line in lines) == 3
    assert len(_attempts(pids)) == 3


def test_a_stopped_worker_hands_back_a_safe_run(live: Stack, tmp_path: Path) -> None:
    """Fault: SIGTERM to a worker (a deploy, a reboot) while a safe run goes, with a stop
    grace shorter than the run. Checked: the worker stops its command, hands the run back
    (queued, never left ``running``) and exits; another worker runs it again; the log
    says attempt 1 was handed back."""
    pids = tmp_path / "pids"
    live.kill("worker", signal.SIGTERM)
    live.start_process("worker", AEGIR_WORKER_STOP_GRACE="1")
    with live.client() as http:
        app = live.make_app(http, "handed-back")
        run = live.trigger(http, app, "probe", {"probe": {"pids": str(pids), "sleep": 120}})
        wait_for(lambda: _pids(pids), "attempt 1 to start", timeout=60)
        first = _pids(pids)
        worker = live.processes.pop("worker")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        after = live.run(http, run["id"])
        assert after["status"] == "queued", "a stopped worker leaves no run running"
        assert not any(exists(pid) for pid in first)
        live.start_process("worker")
        done = live.wait_status(http, run["id"], {"succeeded", "failed", "lost"}, timeout=60)
        lines = [line["line"] for line in _lines(live, http, run["id"])]
    assert (done["status"], done["attempt"]) == ("succeeded", 2)
    assert any("handed back" in line for line in lines)
    assert "shut down" in done["lost_attempts"][0]["why"]


def test_a_stopped_worker_lets_a_short_run_finish(live: Stack, tmp_path: Path) -> None:
    """Fault: SIGTERM to a worker during a run shorter than the stop grace (30 s by
    default). Checked: the run finishes on attempt 1 and the worker then exits; it took
    no new run meanwhile."""
    with live.client() as http:
        app = live.make_app(http, "finishes-first")
        run = live.trigger(http, app, "run", {"first": {"lines": 3, "sleep": 3}})
        live.wait_status(http, run["id"], {"running"})
        worker = live.processes.pop("worker")
        worker.send_signal(signal.SIGTERM)
        later = live.trigger(http, app, "run", {"first": {"lines": 1, "sleep": 0}})
        assert worker.wait(30) == 0
        done = live.run(http, run["id"])
        assert (done["status"], done["attempt"]) == ("succeeded", 1)
        assert live.run(http, later["id"])["status"] == "queued", "no new run taken"
        live.start_process("worker")
        live.wait_status(http, later["id"], {"succeeded"})
