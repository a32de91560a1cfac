"""What a user does with batches, over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.fixtures.stack import Stack, wait_for

ENDED = {"succeeded", "failed", "stopped", "cancelled"}


def make_apps(stack: Stack, http: httpx.Client, prefix: str, n: int) -> list[dict[str, Any]]:
    return [stack.make_app(http, f"{prefix}-{i}") for i in range(n)]


def start_batch(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/api/v1/batches", json=body)
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    return batch


def show(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def wait_finished(http: httpx.Client, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        batch = show(http, batch_id)
        return batch if batch["finished_at"] else None

    found: dict[str, Any] = wait_for(finished, f"batch {batch_id} to finish", timeout, 0.2)
    return found


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs that were running at the same moment, from their start and end."""
    edges: list[tuple[datetime, int]] = []
    for run in runs:
        edges.append((datetime.fromisoformat(run["started_at"]), 1))
        edges.append((datetime.fromisoformat(run["finished_at"]), -1))
    running = most = 0
    # An end and a start at the same instant: the end first (they did not overlap).
    for _at, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        most = max(most, running)
    return most
