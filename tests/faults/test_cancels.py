"""`cancelling` always ends.

Fault: 100 cancels, of queued runs, of running ones, and of running ones while their
worker is killed with SIGKILL (then started again). Every run ends `cancelled` (or in
another final status, if it ended first), within the lease plus a sweep once its
worker is gone; and every `/ws/events` subscriber hears each run's final status, last.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from tests.fixtures.stack import LEASE, SWEEP, Stack, wait_for

FINAL = {"succeeded", "failed", "cancelled", "lost"}
SUBSCRIBERS = 3
# Runs that never end by themselves while the test lasts: only a cancel ends them.
LONG = {"first": {"lines": 2, "sleep": 60}}
# A run whose worker is gone ends once its lease has passed and a sweep has seen it.
SETTLED = LEASE + SWEEP + 10  # slack: a loaded machine, a worker starting again


@dataclass(frozen=True)
class Cancel:
    run: str
    code: int
    status: str | None  # what the answer said the run became


class Subscriber(threading.Thread):
    """One `/ws/events` client: the statuses it heard for each run, in order."""

    def __init__(self, live: Stack) -> None:
        super().__init__(daemon=True)
        self.live = live
        self.lock = threading.Lock()
        self.heard: dict[str, list[str]] = defaultdict(list)
        self.resyncs = 0
        self.stop = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        with self.live.connect("/ws/events") as socket:
            self.connected.set()
            while not self.stop.is_set():
                try:
                    body = json.loads(socket.recv(timeout=0.2))
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                with self.lock:
                    if body.get("type") == "resync":
                        self.resyncs += 1
                    elif body.get("run"):
                        self.heard[body["run"]].append(body["status"])

    def heard_any(self, run: str, status: str) -> bool:
        with self.lock:
            return status in self.heard.get(run, ())

    def last(self, run: str) -> str | None:
        with self.lock:
            statuses = self.heard.get(run)
            return statuses[-1] if statuses else None


def _cancel(http: httpx.Client, run: str) -> Cancel:
    answer = http.post(f"/api/v1/runs/{run}/cancel")
    assert answer.status_code in {202, 409}, answer.text
    return Cancel(run, answer.status_code, answer.json().get("status"))


def _runs(live: Stack, http: httpx.Client, apps: list[dict[str, Any]], each: int) -> list[str]:
    """``each`` long runs on every app, in order: the first of each goes, the rest wait."""
    return [live.trigger(http, app, "run", LONG)["id"] for _ in range(each) for app in apps]


def _running(live: Stack, http: httpx.Client, runs: set[str]) -> list[str]:
    def started() -> list[str]:
        return [run for run in sorted(runs) if live.run(http, run)["status"] == "running"]

    found: list[str] = wait_for(started, "a run to start", timeout=30)
    return found


def _cancel_as_they_start(live: Stack, http: httpx.Client, runs: list[str]) -> list[Cancel]:
    """More runs than the worker takes at once: cancel those running, and so on."""
    pending, done = set(runs), []
    while pending:
        for run in _running(live, http, pending):
            done.append(_cancel(http, run))
            pending.discard(run)
    return done


def _queued_and_running(live: Stack, http: httpx.Client) -> list[Cancel]:
    """20 apps with 3 runs each: 40 cancels of waiting runs, 20 of running ones."""
    apps = [live.make_app(http, f"cancel-{n}") for n in range(20)]
    runs = _runs(live, http, apps, 3)
    first, waiting = runs[: len(apps)], runs[len(apps) :]
    done = [_cancel(http, run) for run in waiting]
    assert {c.status for c in done} == {"cancelled"}, "a waiting run is cancelled at once"
    return done + _cancel_as_they_start(live, http, first)


def _while_the_worker_dies(live: Stack, http: httpx.Client, round_: int) -> list[Cancel]:
    """10 apps, each running one run with one waiting: cancel half of the running,
    SIGKILL the worker, cancel the rest; 20 cancels. The worker starts again after."""
    apps = [live.make_app(http, f"killed-{round_}-{n}") for n in range(10)]
    runs = _runs(live, http, apps, 2)
    going, waiting = runs[: len(apps)], runs[len(apps) :]
    wait_for(lambda: len(_running(live, http, set(going))) == len(going), "all to start", 30)
    done = [_cancel(http, run) for run in going[:5]]
    live.kill("worker")
    done += [_cancel(http, run) for run in going[5:] + waiting]
    live.start_process("worker")
    return done


def _subscribed(live: Stack, http: httpx.Client, subscribers: list[Subscriber]) -> None:
    """Every subscriber hears a run go by: from then on they hear everything."""
    assert all(s.connected.wait(10) for s in subscribers)
    app = live.make_app(http, "cancel-warm-up")
    run = live.trigger(http, app, "run", {"first": {"lines": 1}})["id"]
    wait_for(lambda: all(s.last(run) == "succeeded" for s in subscribers), "subscribers")


def test_every_cancel_ends_and_every_subscriber_hears_the_end(live: Stack) -> None:
    subscribers = [Subscriber(live) for _ in range(SUBSCRIBERS)]
    for subscriber in subscribers:
        subscriber.start()
    with live.client() as http:
        _subscribed(live, http, subscribers)
        cancels = _queued_and_running(live, http)
        cancels += _while_the_worker_dies(live, http, 1)
        cancels += _while_the_worker_dies(live, http, 2)
        assert len({c.run for c in cancels}) == len(cancels) == 100

        def ended() -> dict[str, str] | None:
            final = {c.run: live.run(http, c.run)["status"] for c in cancels}
            return final if set(final.values()) <= FINAL else None

        final: dict[str, str] = wait_for(ended, "every run to end", timeout=SETTLED)
    for cancel in cancels:
        if cancel.code == 202:  # it had not ended: only the cancel can have ended it
            assert final[cancel.run] == "cancelled", cancel

    def heard() -> bool:
        return all(s.heard_any(run, status) for s in subscribers for run, status in final.items())

    wait_for(heard, "every subscriber to hear every run's end", timeout=10)
    for subscriber in subscribers:
        subscriber.stop.set()
        subscriber.join(10)
        assert subscriber.resyncs == 0, "a subscriber fell behind: it may have missed some"
        for run, status in final.items():
            assert subscriber.heard[run][-1] == status, (run, subscriber.heard[run])
