"""Backups of an environment (its database and files) as Jobs, and their restore.

Archives go to the environment's ``backups`` volume, at a path Aegir chooses from the
time and the task; the script that makes or reads them is fixed text here, the path
its one argument: no shell string is ever built from user input. The script reads the
database's address and password from the variables the application has (the password
from its Secret).
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.catalog.builtin.kubernetes.fields import EnvironmentFields
from app.catalog.builtin.kubernetes.tasks import BackupFields, BackupOutputs
from executors.kubernetes import manifests
from executors.kubernetes.apply import apply_all
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


async def backup(step: Step) -> int:
    """Dump the database and archive the files; write the archive's path back."""
    spec = step.spec()
    taken = datetime.now(UTC)
    path = f"{taken:%Y%m%dT%H%M%SZ}-{step.context.key}-{step.context.attempt}.tar.gz"
    await apply_all(step.kube, [manifests.files_claim(spec, manifests.BACKUPS)], step.emit)
    code = await run_in_job(step, spec, _script(BACKUP_SCRIPT, path), backups=True)
    if code == 0:
        await step.emit.output("path", path)
        await step.emit.output("taken_at", taken.isoformat())
    return code


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
    return await run_in_job(step, step.spec(), _script(RESTORE_SCRIPT, path), backups=True)


BACKUP_STEPS: dict[str, StepFunction] = {
    "environment_backup": backup,
    "environment_deploy_backup": deploy_backup,
    "environment_restore": restore,
}
