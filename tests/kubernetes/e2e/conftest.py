"""The whole system as processes (API, worker, relay, Redis) against the kmock emulator,
served from a thread of the test process (``ThreadedCluster``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.factories import operation_id
from tests.fixtures.kmock_thread import ThreadedCluster
from tests.fixtures.stack import Stack, running_stack, wait_for
from tests.kubernetes.samples import IMAGE


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThreadedCluster]:
    threaded = ThreadedCluster()
    threaded.start()
    try:
        yield threaded
    finally:
        threaded.stop()


@pytest.fixture(scope="module")
def kube_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # SQLite only: the flow through the processes is the same on both databases, which
    # tests/e2e already covers; this tier's subject is the Kubernetes back-end.
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('kube') / 'aegir.sqlite3'}"
    with running_stack(url) as system:
        yield system


def post(http: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture(scope="module")
def graph(
    kube_stack: Stack, cluster: ThreadedCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """A cluster (the emulator), a project, two releases, and an installed environment."""
    token = tmp_path_factory.mktemp("token") / "token"
    token.write_text("e2e-service-account-token\n")
    token.chmod(0o600)
    with kube_stack.client() as http:
        return _graph(kube_stack, http, cluster.url, token)


def _graph(stack: Stack, http: httpx.Client, url: str, token: Path) -> dict[str, dict[str, Any]]:
    fields = {"api_url": url, "token_file": str(token)}
    made = {"cluster": post(http, "/api/v1/clusters", {"name": "e2e", "fields": fields})}
    made["project"] = post(
        http, "/api/v1/projects",
        {"name": "shop", "fields": {"git_url": "https://git.example.com/shop.git"}},
    )  # fmt: skip
    for name, digest in (("shop-1", IMAGE), ("shop-2", IMAGE.replace("a" * 64, "c" * 64))):
        made[name] = post(
            http, "/api/v1/releases",
            {"name": name, "fields": {"image": digest, "git_ref": name},
             "references": {"project": made["project"]["id"]}},
        )  # fmt: skip
    references = {"project": made["project"]["id"], "cluster": made["cluster"]["id"],
                  "release": made["shop-1"]["id"]}  # fmt: skip
    made["environment"] = post(
        http, "/api/v1/environments",
        {"name": "shop-dev", "fields": {"hostnames": ["dev.shop.example"]},
         "references": references},
    )  # fmt: skip
    return made


def trigger(
    stack: Stack, http: httpx.Client, entity: dict[str, Any], op: str, values: dict[str, Any]
) -> dict[str, Any]:
    response = http.post(
        f"/api/v1/operations/{operation_id(entity, op)}/runs", json={"values": values}
    )
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def finished(stack: Stack, http: httpx.Client, run: dict[str, Any]) -> dict[str, Any]:
    return stack.wait_status(http, run["id"], {"succeeded", "failed", "cancelled", "lost"}, 60)


def log_text(stack: Stack, http: httpx.Client, run: dict[str, Any]) -> str:
    return "\n".join(line["line"] for line in stack.full_log(http, run["id"]))


__all__ = ["ThreadedCluster", "finished", "log_text", "trigger", "wait_for"]
