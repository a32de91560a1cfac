"""An environment's typed input, as the manifest builders take it."""

from __future__ import annotations

from app.catalog.builtin.kubernetes.fields import (
    ClusterFields,
    EnvironmentFields,
    ProjectFields,
    ReleaseFields,
)
from app.catalog.inputs import EntityInput
from executors.kubernetes.manifests import EnvironmentSpec

# A rollout with no progress for this long fails (ProgressDeadlineExceeded), unless the
# task's timeout comes first.
PROGRESS_DEADLINE = 600


def namespace_of(environment: str) -> str:
    return f"aegir-{environment}"


def environment_spec(
    entity: EntityInput,
    run_id: str,
    *,
    release: EntityInput | None = None,
    env: dict[str, str] | None = None,
    replicas: int | None = None,
    disabled: bool = False,
    timeout: float = PROGRESS_DEADLINE,
) -> EnvironmentSpec:
    """The spec of ``entity`` (an environment), running ``release`` (its own by default).

    ``env``: the project's variables as a stored deploy applied them (a rollback);
    ``replicas``: a scale's. Everything else comes from the entity and its references.
    """
    fields = entity.fields_as(EnvironmentFields)
    project = entity.reference("project")
    cluster = entity.reference("cluster").fields_as(ClusterFields)
    release = release or entity.reference("release")
    project_fields = project.fields_as(ProjectFields)
    return EnvironmentSpec(
        environment=entity.name,
        namespace=namespace_of(entity.name),
        run_id=run_id,
        project=project.name,
        release=release.name,
        image=release.fields_as(ReleaseFields).image,
        web_port=project_fields.web_port,
        cli_container=project_fields.cli_container,
        env=project_fields.env if env is None else env,
        replicas=fields.replicas if replicas is None else replicas,
        hostnames=fields.hostnames,
        ingress_class=cluster.ingress_class,
        storage_class=cluster.storage_class,
        storage_size=fields.storage_size,
        database_engine=fields.database_engine,
        disabled=disabled,
        progress_deadline=max(1, min(PROGRESS_DEADLINE, int(timeout))),
    )
