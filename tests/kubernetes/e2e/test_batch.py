"""Batches over Kubernetes environments go through the same machinery as sites: two
environments installed by one batch, then a release deployed to both by another, on
the kmock emulator (the stand-in for a cluster here)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.stack import Stack, wait_for
from tests.kubernetes.e2e.conftest import ThreadedCluster, post


def _batch(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post("/api/v1/batches", json=body)
    assert answer.status_code == 202, answer.text

    def finished() -> dict[str, Any] | None:
        batch: dict[str, Any] = http.get(f"/api/v1/batches/{answer.json()['id']}").json()
        return batch if batch["finished_at"] else None

    found: dict[str, Any] = wait_for(finished, "the batch to finish", timeout=120, every=0.2)
    return found


def _image(cluster: ThreadedCluster, namespace: str) -> str:
    deployment = cluster.stored("apps/v1/deployments", "app", namespace)
    found: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


def test_a_batch_deploys_a_release_to_two_environments(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        references = {"project": graph["project"]["id"], "cluster": graph["cluster"]["id"],
                      "release": graph["shop-1"]["id"]}  # fmt: skip
        stage = post(http, "/api/v1/environments", {
            "name": "shop-stage", "fields": {"hostnames": ["stage.shop.example"]},
            "references": references,
        })  # fmt: skip
        ids = [graph["environment"]["id"], stage["id"]]
        installed = _batch(http, {"kind": "environment", "operation": "install", "ids": ids})
        assert installed["status"] == "succeeded", installed
        deployed = _batch(http, {
            "kind": "environment", "operation": "deploy", "ids": ids,
            "values": {"deploy": {"release": "shop-2"}}, "concurrency": 2,
        })  # fmt: skip
        assert deployed["status"] == "succeeded", deployed
        assert deployed["summary_text"] == "2 succeeded"
        for entity_id in ids:
            environment = http.get(f"/api/v1/environments/{entity_id}").json()
            assert environment["references"]["release"]["name"] == "shop-2"
    shop_2 = graph["shop-2"]["fields"]["image"]
    assert _image(cluster, "aegir-shop-dev") == shop_2
    assert _image(cluster, "aegir-shop-stage") == shop_2
