"""The Kubernetes executor against kmock, through kubernetes-asyncio, with a test
coroutine playing the controllers (``tests/fixtures/kmock_controller.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kmock

from executors import executor_for
from executors.base import EXIT_CANCELLED, TaskContext
from tests.catalog.samples import entity
from tests.fixtures.kmock import Emulator
from tests.fixtures.kmock_controller import Controller, JobPlay
from tests.kubernetes.conftest import RUN_ID, Contexts, Recorder, until
from tests.kubernetes.samples import IMAGE, OLD_IMAGE, project, release

NS = "aegir-acme-prod"


def stored(emulator: Emulator, resource: str, name: str, namespace: str | None = NS) -> Any:
    found = emulator.objects[resource, namespace, name]
    return None if found.deleted else found.raw


def image_of(deployment: dict[str, Any]) -> str:
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def run(
    contexts: Contexts, context: TaskContext, cancel: asyncio.Event | None = None
) -> tuple[int, Recorder]:
    recorder = Recorder()
    task_type = contexts.catalog.tasks[context.task_type]
    code = await executor_for(task_type).run(context, recorder, cancel or asyncio.Event())
    return code, recorder


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
        r for r in list(emulator) if r.method == kmock.method.PATCH and r.subresource is None
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
    assert log.outputs == {
        "release": "acme-2", "image": OLD_IMAGE, "env": {},
        "previous_release": "acme-1", "previous_image": IMAGE, "previous_env": {},
    }  # fmt: skip


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


INSTALL_VALUES = {"install": {"admin_password": "admin-pass-123456"}}
JOB = f"install-{RUN_ID.replace('-', '')}-1"


async def test_a_jobs_log_lines_arrive_in_order_and_its_exit_code_is_the_tasks(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    lines = [f"step {n}" for n in range(20)]
    controller.jobs["install"] = JobPlay(lines=lines, exit_code=3)
    code, log = await run(contexts, contexts.make("install", values=INSTALL_VALUES))
    assert code == 3
    assert [line for stream, line in log.lines if stream == "stdout"] == lines
    assert f"pod {JOB}-abcde exited with code 3" in log.text()


async def test_a_job_runs_once_until_the_tasks_timeout(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["install"] = JobPlay()
    context = contexts.make("install", values=INSTALL_VALUES, timeout=60)
    assert (await run(contexts, context))[0] == 0
    job = stored(emulator, "batch/v1/jobs", JOB)
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert job["metadata"]["labels"]["aegir.io/run"] == RUN_ID


async def test_outputs_come_back_through_the_marker_and_secrets_are_masked(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["install"] = JobPlay(
        lines=['::output:: {"url": "https://www.acme.example/"}', "password admin-pass-123456"]
    )
    code, log = await run(contexts, contexts.make("install", values=INSTALL_VALUES))
    assert code == 0
    assert log.outputs == {"url": "https://www.acme.example/"}
    assert "password **********" in log.text()
    assert "admin-pass-123456" not in log.text()


async def test_the_admin_password_reaches_the_job_only_through_a_secret(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("install", values=INSTALL_VALUES)))[0] == 0
    job = stored(emulator, "batch/v1/jobs", JOB)
    assert "admin-pass-123456" not in str(job)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert "--account-pass=$(ADMIN_PASSWORD)" in container["command"]
    secret = stored(emulator, "v1/secrets", "install-1")
    assert secret["stringData"] == {"value": "admin-pass-123456"}


async def test_cancel_deletes_the_job_in_the_foreground_and_answers_130(
    contexts: Contexts, emulator: Emulator, controller: Controller, cancel: asyncio.Event
) -> None:
    controller.jobs["install"] = JobPlay(lines=["working"], hold=asyncio.Event())
    task = asyncio.create_task(
        run(contexts, contexts.make("install", values=INSTALL_VALUES), cancel)
    )
    await until(lambda: any(line == "working" for _, line in controller_lines(emulator)))
    cancel.set()
    code, _ = await task
    assert code == EXIT_CANCELLED
    [delete] = [r for r in list(emulator) if r.method == kmock.method.DELETE]
    assert delete.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs/{JOB}"
    assert delete.data["propagationPolicy"] == "Foreground"
    assert stored(emulator, "batch/v1/jobs", JOB) is None


def controller_lines(emulator: Emulator) -> list[tuple[str, str]]:
    """Every line the played containers have written so far."""
    return [entry for lines in emulator.logs.values() for entry in lines]


async def test_a_rerun_of_the_same_attempt_follows_the_job_it_started(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("install", values=INSTALL_VALUES)))[0] == 0
    code, log = await run(contexts, contexts.make("install", values=INSTALL_VALUES))
    assert code == 0
    assert f"Job {JOB} exists: following it" in log.text()
    again = contexts.make("install", values=INSTALL_VALUES, attempt=2)
    assert "created Job install-" in (await run(contexts, again))[1].text()


async def test_run_command_runs_its_argv_in_the_cli_container(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    values = {"run_command": {"command": ["drush", "cr"]}}
    code, _ = await run(contexts, contexts.make("run_command", values=values))
    assert code == 0
    job = stored(emulator, "batch/v1/jobs", f"run-command-{RUN_ID.replace('-', '')}-1")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["command"]) == ("cli", ["drush", "cr"])


async def test_disable_serves_the_maintenance_page_and_enable_removes_it(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("disable")))[0] == 0
    assert stored(emulator, "apps/v1/deployments", "app")["spec"]["replicas"] == 0
    assert stored(emulator, "apps/v1/deployments", "maintenance") is not None
    code, _ = await run(contexts, contexts.make("enable"))
    assert code == 0
    assert stored(emulator, "apps/v1/deployments", "maintenance") is None
    assert stored(emulator, "apps/v1/deployments", "app")["spec"]["replicas"] == 1


async def test_scale_sets_the_replicas_and_reports_those_ready(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    code, log = await run(contexts, contexts.make("scale", values={"scale": {"replicas": 4}}))
    assert code == 0
    assert log.outputs == {"ready_replicas": 4}


async def test_the_database_is_applied_with_its_password_in_its_secret_and_waited_for(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    values = {"database": {"db_password": "db-pass-1234567"}}
    code, log = await run(contexts, contexts.make("database", values=values))
    assert code == 0, log.text()
    assert "database: ready" in log.text()
    assert stored(emulator, "v1/secrets", "database")["stringData"] == {
        "password": "db-pass-1234567"
    }
    assert "db-pass-1234567" not in str(stored(emulator, "apps/v1/statefulsets", "database"))
    assert "db-pass-1234567" not in log.text()


async def test_delete_waits_until_the_namespace_is_gone(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    assert (await run(contexts, contexts.make("namespace")))[0] == 0
    code, log = await run(contexts, contexts.make("delete"))
    assert code == 0
    assert f"namespace {NS} is gone" in log.text()
    assert stored(emulator, "v1/namespaces", NS, None) is None


async def test_verify_cluster_reads_the_version_and_what_aegir_may_do(
    contexts: Contexts, emulator: Emulator
) -> None:
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    reviews = "post /apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
    emulator[reviews] << {"status": {"resourceRules": [everything]}}
    plain = entity("cluster", "prod-eu", contexts.cluster)
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
    plain = entity("cluster", "prod-eu", contexts.cluster)
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
        project=project(), cluster=entity("cluster", "c", contexts.cluster),
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


async def test_an_unreachable_cluster_fails_the_task_with_a_clear_line(
    contexts: Contexts, token_file: Path
) -> None:
    contexts.cluster = {"api_url": "http://127.0.0.1:9", "token_file": str(token_file)}
    code, log = await run(contexts, contexts.make("namespace"))
    assert code == 1
    assert "cannot reach the cluster" in log.text()


APP_LABELS = {"aegir.io/environment": "acme-prod", "app.kubernetes.io/component": "app"}
LINK = "https://www.acme.example/user/reset/1/1700000000/abc/login"


async def test_login_execs_drush_in_the_cli_container_of_a_ready_pod(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    calls: list[tuple[str, str, str, list[str]]] = []

    def answer(namespace: str, pod: str, container: str, argv: list[str]) -> tuple[str, int]:
        calls.append((namespace, pod, container, argv))
        return LINK + "\n", 0

    emulator.on_exec = answer
    await controller.ready_pod(NS, "app-7d9f-x", APP_LABELS)
    code, log = await run(contexts, contexts.make("login"))
    assert code == 0, log.text()
    assert log.outputs == {"url": LINK}
    assert calls == [
        (NS, "app-7d9f-x", "cli",
         ["drush", "user:login", "--uri=https://www.acme.example", "--no-browser"])
    ]  # fmt: skip


async def test_login_takes_the_exit_code_from_the_exec_status_channel(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    emulator.on_exec = lambda *_: ("drush: no site\n", 5)
    await controller.ready_pod(NS, "app-7d9f-x", APP_LABELS)
    code, log = await run(contexts, contexts.make("login"))
    assert code == 5
    assert log.outputs == {}


async def test_login_falls_back_to_a_job_without_a_ready_pod(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["login"] = JobPlay(lines=[LINK])
    code, log = await run(contexts, contexts.make("login"))
    assert code == 0, log.text()
    assert log.outputs == {"url": LINK}
    assert "no ready pod: running drush user:login in a Job" in log.text()


async def test_logs_answers_the_last_lines_of_each_application_pod(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    await controller.ready_pod(NS, "app-1", APP_LABELS)
    await emulator.add_log(NS, "app-1", *[f"GET /{n}" for n in range(10)])
    code, log = await run(contexts, contexts.make("logs", values={"logs": {"lines": 2}}))
    assert code == 0
    assert log.outputs == {"lines": ["app-1: GET /8", "app-1: GET /9"]}


async def test_backup_writes_its_archive_path_and_restore_reads_it(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["backup_archive"] = JobPlay(lines=['::output:: {"size_bytes": 2048}'])
    code, log = await run(contexts, contexts.make("backup_archive"))
    assert code == 0, log.text()
    path = log.outputs["path"]
    assert path.endswith("-backup_archive-1.tar.gz")
    assert log.outputs["size_bytes"] == 2048
    job = stored(emulator, "batch/v1/jobs", f"backup-archive-{RUN_ID.replace('-', '')}-1")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][-1] == path  # the path is an argument, never script text
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"files": "/var/aegir/files", "backups": "/var/aegir/backups"}

    outputs = {"backup_archive": {"path": path}}
    code, log = await run(contexts, contexts.make("restore", outputs=outputs))
    assert code == 0, log.text()
    job = stored(emulator, "batch/v1/jobs", f"restore-{RUN_ID.replace('-', '')}-1")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == path


async def test_restore_without_an_archive_fails_saying_why(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    code, log = await run(contexts, contexts.make("restore"))
    assert code == 1
    assert "no archive to restore" in log.text()


async def test_only_production_is_backed_up_before_a_deploy(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    development = contexts.plain({"tier": "development"})
    code, log = await run(contexts, contexts.make("deploy_backup", development))
    assert (code, log.outputs) == (0, {})
    assert "development environment: no backup before a deploy" in log.text()
    code, log = await run(contexts, contexts.make("deploy_backup"))
    assert code == 0
    assert "path" in log.outputs


def release_context(contexts: Contexts) -> TaskContext:
    cluster = entity("cluster", "prod-eu", contexts.cluster)
    return contexts.make(
        "verify",
        release(),
        values={"verify": {"cluster": "prod-eu"}},
        refs={"verify": {"cluster": cluster}},
    )


async def test_verify_release_pulls_its_image_in_a_job_on_the_named_cluster(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    code, log = await run(contexts, release_context(contexts))
    assert code == 0, log.text()
    assert log.outputs == {"pullable": True}
    job = emulator.objects["batch/v1/jobs", "aegir-releases", f"pull-{RUN_ID.replace('-', '')}-1"]
    assert job.last.raw["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert job.deleted


async def test_verify_release_fails_when_the_image_cannot_be_pulled(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["verify"] = JobPlay(pull_error="ErrImagePull")
    code, log = await run(contexts, release_context(contexts))
    assert code == 1
    assert log.outputs == {"pullable": False}
    assert "cannot pull the image: ErrImagePull: not found" in log.text()


async def test_a_dropped_log_follow_resumes_without_a_gap_or_a_repeat(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    # Ten lines with one timestamp: the reconnection asks from that time, and must skip
    # the three it already has.
    lines = [f"line {n}" for n in range(10)]
    hold = asyncio.Event()
    controller.jobs["install"] = JobPlay(lines=lines, batch=True, hold=hold)
    emulator.cut_follow_after = 3
    task = asyncio.create_task(run(contexts, contexts.make("install", values=INSTALL_VALUES)))
    await until(lambda: emulator.cut_follow_after is None)
    await asyncio.sleep(0.5)  # the executor reconnects while the container still runs
    hold.set()
    code, log = await task
    assert code == 0, log.text()
    assert [line for stream, line in log.lines if stream == "stdout"] == lines
    follows = [r for r in list(emulator) if r.subresource == "log"]
    assert len(follows) >= 2 and "sinceTime" in follows[-1].params
