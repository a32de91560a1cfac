"""The whole system as processes (API, worker, relay, Redis) against the kmock emulator,
served from a thread of the test process (``ThreadedCluster``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.factories import operation_id
from tests.fixtures.kmock_thread import ThreadedCluster
from tests.fixtures.services import create_database
from tests.fixtures.stack import Stack, running_stack, wait_for
from tests.kubernetes.samples import IMAGE


@pytest.fixture(scope="module")
def cluster(kube_stack: Stack) -> Iterator[ThreadedCluster]:
    """A fresh emulator for each database's stack (the tests build on one environment)."""
    threaded = ThreadedCluster()
    threaded.start()
    try:
        yield threaded
    finally:
        threaded.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kube_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The system on each database, as tests/e2e runs it: a run's values, outputs and
    effects (a repointed release) go through both."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('kube') / 'aegir.sqlite3'}"
    else:
        name = f"aegir_kube_{uuid.uuid4().hex[:8]}"
        url = create_database(request.getfixturevalue("postgres_url"), name)
    with running_stack(url) as system:
        yield system


def post(http: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


TOKEN = "e2e-service-account-token"


@pytest.fixture(scope="module")
def graph(kube_stack: Stack, cluster: ThreadedCluster) -> dict[str, dict[str, Any]]:
    """A cluster (the emulator, its token sent in a verify), a project, two releases, and
    an environment."""
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    reviews = "post /apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    cluster.call(lambda: cluster.emulator[reviews] << {"status": {"resourceRules": [everything]}})
    with kube_stack.client() as http:
        made = _graph(http, cluster.url)
        run = trigger(
            kube_stack, http, made["cluster"], "verify", {"credentials": {"token": TOKEN}}
        )
        assert finished(kube_stack, http, run)["status"] == "succeeded", log_text(
            kube_stack, http, run
        )
        return made


def _graph(http: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    made = {"cluster": post(http, "/api/v1/clusters", {"name": "e2e", "fields": {"api_url": url}})}
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


__all__ = ["TOKEN", "ThreadedCluster", "finished", "log_text", "trigger", "wait_for"]
