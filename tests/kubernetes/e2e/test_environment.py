"""An environment through real API, worker and relay processes, on the kmock emulator:
install, deploy (and its failed rollout), a Job's log on the websocket, cancel, login,
backup and restore. The tests run in order on one environment, as a user would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.fixtures.kmock_controller import JobPlay
from tests.fixtures.stack import Stack, wait_for
from tests.kubernetes.e2e.conftest import TOKEN, ThreadedCluster, finished, log_text, trigger

NS = "aegir-shop-dev"


def image(cluster: ThreadedCluster) -> str:
    deployment = cluster.stored("apps/v1/deployments", "app", NS)
    found: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


def environment(stack: Stack, graph: dict[str, dict[str, Any]]) -> dict[str, Any]:
    with stack.client() as http:
        found: dict[str, Any] = http.get(
            f"/api/v1/environments/{graph['environment']['id']}"
        ).json()
        return found


def test_install_applies_each_object_and_streams_the_rollout(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        run = trigger(kube_stack, http, graph["environment"], "install", {})
        end = finished(kube_stack, http, run)
        text = log_text(kube_stack, http, run)
        assert end["status"] == "succeeded", text
        for line in (
            f"applied Namespace {NS} (generation 1)",
            f"applied Secret {NS}/database (generation 1)",
            f"applied Deployment {NS}/app (generation 1)",
            "rollout of app: rolled out: 1 of 1 replicas available",
            "database: ready",
        ):
            assert line in text
        # Five steps, and the undo of a failed install, not needed.
        assert [t["status"] for t in end["tasks"]] == ["succeeded"] * 5 + ["skipped"]
    assert environment(kube_stack, graph)["state"] == "enabled"


def test_no_secret_reaches_a_manifest_the_log_or_the_runs_values(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    secret = cluster.stored("v1/secrets", "database", NS)
    password = secret["stringData"]["password"]
    # A command that prints the cluster's token (a leaked variable, say): masked.
    cluster.call(lambda: cluster.controller.jobs.update(run_command=JobPlay([f"t={TOKEN}"])))
    with kube_stack.client() as http:
        values = {"run_command": {"command": ["env"]}}
        printed = trigger(kube_stack, http, graph["environment"], "run_command", values)
        assert finished(kube_stack, http, printed)["status"] == "succeeded"
        assert "t=****" in log_text(kube_stack, http, printed)
        runs = [
            run
            for entity in (graph["environment"], graph["cluster"])
            for run in http.get("/api/v1/runs", params={"entity": entity["id"]}).json()["items"]
        ]
        assert len(runs) >= 3
        for run in runs:
            stored = json.dumps(http.get(f"/api/v1/runs/{run['id']}").json())
            logged = log_text(kube_stack, http, run)
            for value in (password, TOKEN):
                assert value not in stored and value not in logged
    objects = cluster.call(lambda: [json.dumps(o.raw) for o in cluster.emulator.objects.values()])
    assert not [o for o in objects if TOKEN in o]
    assert [o for o in objects if password in o] == [json.dumps(secret)]
    assert TOKEN not in kube_stack.log("worker")
    # It is what the worker signed in with.
    sent = cluster.call(lambda: {r.headers.get("Authorization") for r in list(cluster.emulator)})
    assert f"Bearer {TOKEN}" in sent


def test_a_failed_rollout_fails_the_deploy_and_reapplies_the_previous_release(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    before = image(cluster)
    bad = graph["shop-2"]["fields"]["image"]
    cluster.call(lambda: cluster.controller.failing_images.add(bad))
    try:
        with kube_stack.client() as http:
            run = trigger(
                kube_stack, http, graph["environment"], "deploy", {"deploy": {"release": "shop-2"}}
            )
            end = finished(kube_stack, http, run)
            text = log_text(kube_stack, http, run)
        assert end["status"] == "failed", text
        assert "ProgressDeadlineExceeded" in text
        assert image(cluster) == before
        assert environment(kube_stack, graph)["references"]["release"]["name"] == "shop-1"
    finally:
        cluster.call(lambda: cluster.controller.failing_images.discard(bad))


def test_deploy_rolls_out_the_release_and_repoints_the_environment(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        run = trigger(
            kube_stack, http, graph["environment"], "deploy", {"deploy": {"release": "shop-2"}}
        )
        end = finished(kube_stack, http, run)
        assert end["status"] == "succeeded", log_text(kube_stack, http, run)
    assert image(cluster) == graph["shop-2"]["fields"]["image"]
    assert environment(kube_stack, graph)["references"]["release"]["name"] == "shop-2"


def test_rollback_reapplies_the_replaced_release_and_repoints_the_environment(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        run = trigger(kube_stack, http, graph["environment"], "rollback", {})
        end = finished(kube_stack, http, run)
        assert end["status"] == "succeeded", log_text(kube_stack, http, run)
        assert image(cluster) == graph["shop-1"]["fields"]["image"]
        assert environment(kube_stack, graph)["references"]["release"]["name"] == "shop-1"
        # A second rollback undoes the first, as `kubectl rollout undo` does.
        run = trigger(kube_stack, http, graph["environment"], "rollback", {})
        assert finished(kube_stack, http, run)["status"] == "succeeded"
    assert image(cluster) == graph["shop-2"]["fields"]["image"]
    assert environment(kube_stack, graph)["references"]["release"]["name"] == "shop-2"


def test_a_jobs_lines_arrive_on_the_websocket_in_order_with_its_exit_code(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    lines = [f"cache line {n}" for n in range(50)]
    cluster.call(lambda: cluster.controller.jobs.update(run_command=JobPlay(lines, 3)))
    with kube_stack.client() as http:
        values = {"run_command": {"command": ["drush", "cr"]}}
        run = trigger(kube_stack, http, graph["environment"], "run_command", values)
        with kube_stack.connect(f"/ws/runs/{run['id']}?after=0") as socket:
            messages = [json.loads(message) for message in socket]
    logged = [line for m in messages if m["type"] == "log" for line in m["lines"]]
    assert [line["line"] for line in logged if line["stream"] == "stdout"] == lines
    assert [line["seq"] for line in logged] == list(range(1, len(logged) + 1))
    assert (messages[-1]["status"], messages[-1]["exit_code"]) == ("failed", 3)


def test_cancel_deletes_the_job(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    # The Event belongs to the emulator's loop: made there.
    play = cluster.call(lambda: JobPlay(["started"], hold=asyncio.Event()))
    cluster.call(lambda: cluster.controller.jobs.update(run_command=play))
    with kube_stack.client() as http:
        values = {"run_command": {"command": ["sleep", "600"]}}
        run = trigger(kube_stack, http, graph["environment"], "run_command", values)
        wait_for(lambda: "started" in log_text(kube_stack, http, run), "the Job to start")
        assert http.post(f"/api/v1/runs/{run['id']}/cancel").status_code == 202
        end = finished(kube_stack, http, run)
    assert end["status"] == "cancelled"
    job = f"run-command-{run['id'].replace('-', '')}-1"
    deletes = cluster.call(
        lambda: [r for r in list(cluster.emulator) if r.method == "DELETE" and job in r.url.path]
    )
    assert [d.data["propagationPolicy"] for d in deletes] == ["Foreground"]


def test_login_answers_a_link_within_the_request(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    link = "https://dev.shop.example/user/reset/1/1/x/login"
    cluster.call(lambda: cluster.controller.jobs.update(login=JobPlay([link])))
    with kube_stack.client() as http:
        answer = http.post(f"/api/v1/environments/{graph['environment']['id']}/actions/login")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"url": link}


def test_backup_writes_the_archive_path_that_restore_reads(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        values = {"backup_archive": {"description": "before the upgrade"}}
        run = trigger(kube_stack, http, graph["environment"], "backup", values)
        assert finished(kube_stack, http, run)["status"] == "succeeded"
        op = http.get(f"/api/v1/operations/{_operation(graph, 'restore')}").json()
        archive = next(t for t in op["tasks"] if t["key"] == "backup_archive")
        path = archive["outputs"]["path"]
        assert path.endswith(".tar.gz")
        # Why it was taken is said in the run's log.
        assert f"backup {path}: before the upgrade" in log_text(kube_stack, http, run)
        run = trigger(kube_stack, http, graph["environment"], "restore", {})
        end = finished(kube_stack, http, run)
        assert end["status"] == "succeeded", log_text(kube_stack, http, run)
        assert f"restoring {path}" in log_text(kube_stack, http, run)


def _operation(graph: dict[str, dict[str, Any]], op: str) -> str:
    return str(next(o["id"] for o in graph["environment"]["operations"] if o["type"] == op))


def test_delete_keeps_the_backups_and_a_new_install_restores_from_them(
    kube_stack: Stack, cluster: ThreadedCluster, graph: dict[str, dict[str, Any]]
) -> None:
    with kube_stack.client() as http:
        run = trigger(kube_stack, http, graph["environment"], "delete", {})
        assert finished(kube_stack, http, run)["status"] == "succeeded"
        assert environment(kube_stack, graph)["state"] == "deleted"
        op = http.get(f"/api/v1/operations/{_operation(graph, 'restore')}").json()
        archive = next(t for t in op["tasks"] if t["key"] == "backup_archive")["outputs"]

        def phase() -> str | None:
            kept = cluster.stored("v1/persistentvolumes", archive["volume"], None)
            return None if kept is None else (kept.get("status") or {}).get("phase")

        # Its claim went with the namespace; the volume stays, with the archives.
        wait_for(lambda: phase() == "Released", "the backups' volume to be released")
        for op_name in ("install", "restore"):
            run = trigger(kube_stack, http, graph["environment"], op_name, {})
            end = finished(kube_stack, http, run)
            assert end["status"] == "succeeded", log_text(kube_stack, http, run)
        text = log_text(kube_stack, http, run)
    assert f"the archives kept on volume {archive['volume']} again" in text
    assert f"restoring {archive['path']}" in text
    claim = cluster.stored("v1/persistentvolumeclaims", "backups", NS)
    assert claim["spec"]["volumeName"] == archive["volume"]
