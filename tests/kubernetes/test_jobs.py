"""Jobs of the Kubernetes executor against kmock (install, commands, backups, login, logs,
a release's pull check): their log lines, exit codes, outputs, cancel and re-runs."""

from __future__ import annotations

import asyncio

import kmock

from executors.base import EXIT_CANCELLED, EXIT_TIMEOUT, TaskContext
from tests.fixtures.kmock import Emulator
from tests.fixtures.kmock_controller import Controller, JobPlay
from tests.kubernetes.conftest import NS, RUN_ID, Contexts, run, stored, until
from tests.kubernetes.samples import IMAGE, release

APP_LABELS = {"aegir.io/environment": "acme-prod", "app.kubernetes.io/component": "app"}
LINK = "https://www.acme.example/user/reset/1/1700000000/abc/login"
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
    assert log.outputs.pop("observed_at")  # which of verify and scale saw it last
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
    cluster = contexts.cluster_entity()
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


async def test_a_job_past_the_tasks_timeout_is_deleted_and_answers_124(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    controller.jobs["install"] = JobPlay(lines=["working"], hold=asyncio.Event())
    code, log = await run(contexts, contexts.make("install", values=INSTALL_VALUES, timeout=1))
    assert code == EXIT_TIMEOUT
    assert f"timed out after 1s: deleting Job {JOB}" in log.text()
    assert stored(emulator, "batch/v1/jobs", JOB) is None
