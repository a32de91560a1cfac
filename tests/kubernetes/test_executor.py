"""The Kubernetes executor against kmock, through kubernetes-asyncio, with a test
coroutine playing the controllers (``tests/fixtures/kmock_controller.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kmock
import pytest

from executors.base import EXIT_CANCELLED, ExecutorUnavailable
from tests.catalog.samples import entity
from tests.fixtures.kmock import Emulator
from tests.fixtures.kmock_controller import Controller
from tests.kubernetes.conftest import NS, RUN_ID, Contexts, image_of, run, stored, until
from tests.kubernetes.samples import IMAGE, OLD_IMAGE, project, release

NEW_IMAGE = IMAGE.replace("a" * 64, "e" * 64)


async def test_the_application_is_applied_one_line_per_object_and_rolled_out(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    code, log = await run(contexts, contexts.make("application"))
    assert code == 0, log.text()
    applied = [line for _, line in log.lines if line.startswith("applied ")]
    assert applied == [
        f"applied PersistentVolumeClaim {NS}/files (generation 1)",
        f"applied Deployment {NS}/app (generation 1)",
        f"applied Service {NS}/app (generation 1)",
        f"applied Ingress {NS}/app (generation 1)",
    ]
    assert "rollout of app: rolled out: 1 of 1 replicas available" in log.text()
    assert image_of(stored(emulator, "apps/v1/deployments", "app")) == IMAGE
    patches = [
        r
        for r in list(emulator)
        if r.method == kmock.method.PATCH
        and r.subresource is None
        and r.headers.get("User-Agent", "").startswith("OpenAPI")  # not the controller's
    ]
    assert {r.params["fieldManager"] for r in patches} == {"aegir"}
    assert {r.headers["Content-Type"] for r in patches} == {"application/apply-patch+yaml"}


async def test_every_request_carries_the_clusters_token(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    await run(contexts, contexts.make("namespace"))
    ours = [r for r in list(emulator) if r.headers.get("User-Agent", "").startswith("OpenAPI")]
    assert ours and {r.headers["Authorization"] for r in ours} == {"Bearer a-service-account-token"}


async def test_objects_no_longer_rendered_are_pruned(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("application")))[0] == 0
    assert stored(emulator, "networking.k8s.io/v1/ingresses", "app") is not None
    plain = contexts.plain({"hostnames": []})
    code, log = await run(contexts, contexts.make("application", plain))
    assert code == 0
    assert f"pruned Ingress {NS}/app" in log.text()
    assert stored(emulator, "networking.k8s.io/v1/ingresses", "app") is None
    assert stored(emulator, "v1/persistentvolumeclaims", "files") is not None


async def test_a_rollout_past_its_deadline_fails_and_the_previous_release_is_reapplied(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("application")))[0] == 0
    controller.failing_images.add(OLD_IMAGE)
    bad = release("acme-2", OLD_IMAGE)
    context = contexts.make(
        "deploy", values={"deploy": {"release": "acme-2"}}, refs={"deploy": {"release": bad}}
    )
    code, log = await run(contexts, context)
    assert code == 1
    assert "ProgressDeadlineExceeded" in log.text()
    assert "rollout failed: re-applying release acme-1" in log.text()
    assert image_of(stored(emulator, "apps/v1/deployments", "app")) == IMAGE
    assert log.outputs == {}


async def test_a_deploy_writes_what_it_applied_and_what_it_replaced(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    new = release("acme-2", OLD_IMAGE)
    context = contexts.make(
        "deploy", values={"deploy": {"release": "acme-2"}}, refs={"deploy": {"release": new}}
    )
    code, log = await run(contexts, context)
    assert code == 0, log.text()
    assert image_of(stored(emulator, "apps/v1/deployments", "app")) == OLD_IMAGE
    applied_at = log.outputs.pop("applied_at")
    history = log.outputs.pop("history")
    assert log.outputs == {
        "release": "acme-2", "image": OLD_IMAGE, "env": {},
        "previous_release": "acme-1", "previous_image": IMAGE, "previous_env": {},
    }  # fmt: skip
    assert history == [
        {"at": applied_at, "by": "deploy", "release": "acme-2", "image": OLD_IMAGE,
         "run": RUN_ID}
    ]  # fmt: skip


async def test_a_rollback_restores_the_previous_image_and_configuration(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    outputs = {
        "deploy": {
            "release": "acme-1", "image": IMAGE, "env": {"MODE": "new"},
            "previous_release": "acme-0", "previous_image": OLD_IMAGE,
            "previous_env": {"MODE": "old"},
        }
    }  # fmt: skip
    plain = contexts.plain(project_fields={"env": {"MODE": "new"}})
    code, log = await run(contexts, contexts.make("rollback", plain, outputs=outputs))
    assert code == 0, log.text()
    deployment = stored(emulator, "apps/v1/deployments", "app")
    assert image_of(deployment) == OLD_IMAGE
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODE", "value": "old"} in env
    # What it applied: the environment's release once the run succeeds (OnSuccess).
    assert (log.outputs["release"], log.outputs["previous_release"]) == ("acme-0", "acme-1")
    assert [entry["by"] for entry in log.outputs["history"]] == ["rollback"]


async def test_rollback_follows_the_newest_of_deploy_promote_and_rollback(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    """A promote after a deploy: a rollback undoes the promote, not the deploy."""
    entry = {"by": "deploy", "release": "acme-0", "image": OLD_IMAGE, "run": "r1"}
    outputs = {
        "deploy": {
            "release": "acme-0", "image": OLD_IMAGE, "previous_release": "acme-9",
            "previous_image": NEW_IMAGE, "applied_at": "2026-11-01T10:00:00Z",
            "history": [{**entry, "at": "2026-11-01T10:00:00Z"}],
        },
        "promote": {
            "release": "acme-1", "image": IMAGE, "previous_release": "acme-0",
            "previous_image": OLD_IMAGE, "applied_at": "2026-11-02T10:00:00Z",
            "history": [
                {"by": "promote", "release": "acme-1", "image": IMAGE, "run": "r2",
                 "at": "2026-11-02T10:00:00Z"},
                {**entry, "at": "2026-11-01T10:00:00Z"},
            ],
        },
    }  # fmt: skip
    code, log = await run(contexts, contexts.make("rollback", outputs=outputs))
    assert code == 0, log.text()
    assert image_of(stored(emulator, "apps/v1/deployments", "app")) == OLD_IMAGE
    # Each deploy once, newest first, whichever task's outputs held it.
    assert [e["run"] for e in log.outputs["history"]] == [RUN_ID, "r2", "r1"]


async def test_a_rollout_resumes_its_watch_after_410_gone(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    emulator.expire_next_watch.add("deployments")
    controller.stuck_images.add(IMAGE)
    task = asyncio.create_task(run(contexts, contexts.make("application")))
    await until(lambda: not emulator.expire_next_watch)  # the rollout's watch got its 410
    controller.stuck_images.clear()
    code, log = await task
    assert code == 0, log.text()
    assert "rolled out" in log.text()


async def test_warning_events_are_logged_while_the_rollout_waits(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.warnings.append(
        {"type": "Warning", "reason": "BackOff", "message": "Back-off pulling image",
         "involvedObject": {"kind": "Pod", "name": "app-1"}}
    )  # fmt: skip
    controller.stuck_images.add(IMAGE)
    code, log = await run(contexts, contexts.make("application", timeout=1))
    assert code == 1
    assert "warning: Pod/app-1: BackOff: Back-off pulling image" in log.text()
    assert "rollout of app not done after the task's timeout (1s)" in log.text()


async def test_verify_cluster_reads_the_version_and_what_aegir_may_do(
    contexts: Contexts, emulator: Emulator
) -> None:
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    reviews = "post /apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    emulator[reviews] << {"status": {"resourceRules": [everything]}}
    plain = contexts.cluster_entity()
    code, log = await run(contexts, contexts.make("verify", plain))
    assert code == 0, log.text()
    assert log.outputs["server_version"].startswith("v1.")
    assert log.outputs["missing_permissions"] == []


async def test_verify_cluster_fails_naming_what_aegir_may_not_do(
    contexts: Contexts, emulator: Emulator
) -> None:
    read_only = {"apiGroups": ["", "apps", "batch", "networking.k8s.io"], "resources": ["*"],
                 "verbs": ["get", "list", "watch"]}  # fmt: skip
    reviews = "post /apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    emulator[reviews] << {"status": {"resourceRules": [read_only]}}
    plain = contexts.cluster_entity()
    code, log = await run(contexts, contexts.make("verify", plain))
    assert code == 1
    assert "patch apps/deployments" in log.outputs["missing_permissions"]
    assert "get apps/deployments" not in log.outputs["missing_permissions"]
    assert "not allowed: create batch/jobs" in log.text()


async def test_promote_deploys_what_another_environment_runs(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    staging = entity(
        "environment", "acme-stage", {"tier": "development"},
        project=project(), cluster=contexts.cluster_entity("c"),
        release=release("acme-2", OLD_IMAGE),
    )  # fmt: skip
    context = contexts.make(
        "promote",
        values={"promote": {"source": "acme-stage"}},
        refs={"promote": {"source": staging}},
    )
    code, log = await run(contexts, context)
    assert code == 0, log.text()
    assert image_of(stored(emulator, "apps/v1/deployments", "app")) == OLD_IMAGE
    assert log.outputs["previous_release"] == "acme-1"
    assert log.outputs["release"] == "acme-2"  # the environment's release once it succeeds


async def test_without_a_saved_token_the_token_file_is_read(
    contexts: Contexts, emulator: Emulator, controller: Controller, token_file: Path
) -> None:
    """Aegir running in the cluster: the kubelet renews the token in a file."""
    contexts.credentials = {}
    contexts.cluster = {**contexts.cluster, "token_file": str(token_file)}
    code, log = await run(contexts, contexts.make("namespace"))
    assert code == 0, log.text()
    ours = [r for r in list(emulator) if r.headers.get("User-Agent", "").startswith("OpenAPI")]
    assert ours and {r.headers["Authorization"] for r in ours} == {"Bearer a-token-in-a-file"}


async def test_a_cluster_without_a_token_says_where_to_give_one(contexts: Contexts) -> None:
    contexts.credentials = {}
    with pytest.raises(ExecutorUnavailable, match=r"send one in its verify run"):
        await run(contexts, contexts.make("namespace"))


async def test_an_unreachable_cluster_fails_the_task_with_a_clear_line(
    contexts: Contexts,
) -> None:
    contexts.cluster = {"api_url": "http://127.0.0.1:9"}
    code, log = await run(contexts, contexts.make("namespace"))
    assert code == 1
    assert "cannot reach the cluster" in log.text()


async def test_cancel_stops_a_rollout_wait_with_130(
    contexts: Contexts, emulator: Emulator, controller: Controller, cancel: asyncio.Event
) -> None:
    controller.stuck_images.add(IMAGE)
    task = asyncio.create_task(run(contexts, contexts.make("application", timeout=60), cancel))
    await until(lambda: stored(emulator, "apps/v1/deployments", "app") is not None)
    cancel.set()
    code, log = await task
    assert code == EXIT_CANCELLED
    assert "cancelled: stopping the step" in log.text()
