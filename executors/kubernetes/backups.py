"""Backups of an environment (its database and files) as Jobs, and their restore.

Archives go to the environment's ``backups`` volume, at a path Aegir chooses from the
time and the task. That volume outlives the namespace: after each backup its
PersistentVolume is set to ``Retain`` and labelled with the environment, so ``delete``
(which deletes the namespace, the claim with it) leaves the archives; the next install's
first backup or restore binds a new claim to that volume again. Not a claim in a shared
namespace: a pod mounts claims of its own namespace only, and the files volume it
archives is in the environment's. The script that makes or reads an archive is fixed
text here, the path its one argument: no shell string is ever built from user input. It
reads the database's address and password from the variables the application has (the
password from its Secret).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.catalog.builtin.kubernetes.fields import EnvironmentFields
from app.catalog.builtin.kubernetes.tasks import BackupFields, BackupOutputs
from executors.kubernetes import manifests
from executors.kubernetes.apply import apply_all
from executors.kubernetes.manifests import EnvironmentSpec
from executors.kubernetes.steps import Step, StepFunction, run_in_job

BACKUP_SCRIPT = r"""set -eu
archive="$AEGIR_BACKUPS/$1"
work=$(mktemp -d)
case "$DB_DRIVER" in
  mysql) MYSQL_PWD="$DB_PASSWORD" mysqldump -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" \
           --single-transaction "$DB_NAME" > "$work/database.sql" ;;
  pgsql) PGPASSWORD="$DB_PASSWORD" pg_dump -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" \
           "$DB_NAME" > "$work/database.sql" ;;
esac
tar -czf "$archive" -C "$work" database.sql -C "$AEGIR_FILES/.." "$(basename "$AEGIR_FILES")"
rm -rf "$work"
printf '::output:: {"size_bytes": %s}\n' "$(stat -c %s "$archive")"
"""

RESTORE_SCRIPT = r"""set -eu
archive="$AEGIR_BACKUPS/$1"
test -f "$archive"
work=$(mktemp -d)
tar -xzf "$archive" -C "$work"
case "$DB_DRIVER" in
  mysql) MYSQL_PWD="$DB_PASSWORD" mysql -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" \
           "$DB_NAME" < "$work/database.sql" ;;
  pgsql) PGPASSWORD="$DB_PASSWORD" psql -v ON_ERROR_STOP=1 -h "$DB_HOST" -p "$DB_PORT" \
           -U "$DB_USER" "$DB_NAME" < "$work/database.sql" ;;
esac
find "$AEGIR_FILES" -mindepth 1 -delete
cp -a "$work/$(basename "$AEGIR_FILES")/." "$AEGIR_FILES/"
rm -rf "$work"
"""


def _script(script: str, argument: str) -> list[str]:
    env = f"AEGIR_BACKUPS={manifests.BACKUPS_MOUNT} AEGIR_FILES={manifests.FILES_MOUNT}"
    return ["sh", "-c", f"export {env}\n{script}", "aegir", argument]


BACKUPS_OF = "aegir.io/backups-of"  # on a kept volume: the environment's name


async def backup(step: Step) -> int:
    """Dump the database and archive the files; write the archive's path back."""
    spec = step.spec()
    taken = datetime.now(UTC)
    path = f"{taken:%Y%m%dT%H%M%SZ}-{step.context.key}-{step.context.attempt}.tar.gz"
    await _backups_claim(step, spec)
    code = await run_in_job(step, spec, _script(BACKUP_SCRIPT, path), backups=True)
    values = step.context.values
    if code == 0 and isinstance(values, BackupFields) and values.description:
        await step.emit.log("system", f"backup {path}: {values.description}")
    if code == 0:
        await step.emit.output("path", path)
        await step.emit.output("taken_at", taken.isoformat())
        if (volume := await _keep(step, spec)) is not None:
            await step.emit.output("volume", volume)
    return code


async def _backups_claim(step: Step, spec: EnvironmentSpec) -> None:
    """The backups claim; on a new install, bound to the volume kept from an earlier one."""
    if await step.kube.get("PersistentVolumeClaim", manifests.BACKUPS, spec.namespace):
        return
    kept = await step.kube.list("PersistentVolume", labels={BACKUPS_OF: spec.environment})
    free = [v for v in kept if (v.get("status") or {}).get("phase") in ("Released", "Available")]
    volume = free[0] if free else None
    if volume is not None:
        name = volume["metadata"]["name"]
        # Reserved for the new claim: a Released volume still names the deleted one.
        ref = {"namespace": spec.namespace, "name": manifests.BACKUPS}
        await step.kube.merge_patch(
            "PersistentVolume", name,
            {"spec": {"claimRef": {**ref, "uid": None, "resourceVersion": None}}},
        )  # fmt: skip
        await step.emit.log("system", f"backups: the archives kept on volume {name} again")
    await apply_all(step.kube, [manifests.backups_claim(spec, volume)], step.emit)


async def _keep(step: Step, spec: EnvironmentSpec) -> str | None:
    """Set the backups' volume to outlive its claim (and the namespace); its name."""
    claim = await step.kube.get("PersistentVolumeClaim", manifests.BACKUPS, spec.namespace)
    volume = ((claim or {}).get("spec") or {}).get("volumeName")
    if not volume:
        await step.emit.log("system", "backups: the claim is not bound: its volume is not kept")
        return None
    keep = {
        "metadata": {"labels": {BACKUPS_OF: spec.environment}},
        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
    }
    await step.kube.merge_patch("PersistentVolume", volume, keep)
    await step.emit.log("system", f"backups: volume {volume} kept if the namespace is deleted")
    return str(volume)


async def deploy_backup(step: Step) -> int:
    """Production is backed up before a deploy; other tiers are not."""
    tier = step.context.entity.fields_as(EnvironmentFields).tier
    if tier != "production":
        await step.emit.log("system", f"{tier} environment: no backup before a deploy")
        return 0
    return await backup(step)


async def restore(step: Step) -> int:
    """Restore the archive the backup task names (its value, else its latest output)."""
    view = step.context.view
    chosen = view.values_of("backup_archive", BackupFields).path
    path = chosen or view.outputs_of("backup_archive", BackupOutputs).path
    if path is None:
        await step.emit.log("system", "no archive to restore: back up first, or name one")
        return 1
    await step.emit.log("system", f"restoring {path}")
    spec = step.spec()
    await _backups_claim(step, spec)
    return await run_in_job(step, spec, _script(RESTORE_SCRIPT, path), backups=True)


BACKUP_STEPS: dict[str, StepFunction] = {
    "environment_backup": backup,
    "environment_deploy_backup": deploy_backup,
    "environment_restore": restore,
}
