"""Entity graphs as a worker's claim holds them (JSON), for building typed input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.catalog.registry import Catalog
from app.dispatch.executor_input import typed_input
from executors.base import TaskContext


def entity(kind: str, name: str, fields: dict[str, Any], **refs: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{kind}-{name}",
        "kind": kind,
        "name": name,
        "url": f"http://{name}",
        "state": "enabled",
        "fields": fields,
        "references": refs,
    }


def server(connection: str = "local", name: str = "web1.example.com") -> dict[str, Any]:
    fields = {"hostname": "10.0.0.5", "connection": connection, "ssh_user": "deploy"}
    return entity("server", name, {**fields, "ssh_port": 2222})


def platform(name: str = "p", root: str = "/srv/p") -> dict[str, Any]:
    return entity("platform", name, {"root": root}, server=server())


def site(name: str = "www.example.com") -> dict[str, Any]:
    db = server("ssh", "db1.example.com")
    return entity("site", name, {"aliases": ["example.com"]}, platform=platform(), db_server=db)


# Values set on the tasks whose builders read them: every builder has something to read.
VALUES: dict[str, dict[str, Any]] = {
    "database": {"engine": "postgresql", "db_password": "a-secret-password"},
    "vhost": {"port": 8080},
    "clone": {"new_domain": "copy.example.com", "db_password": "another-secret"},
    "migrate": {"target_platform": "p2"},
    "purge": {"paths": ["node/1"]},
}
OUTPUTS: dict[str, dict[str, Any]] = {"backup_archive": {"path": "www.example.com/1.tar.gz"}}
REFS: dict[str, dict[str, Any]] = {"migrate": {"target_platform": platform("p2", "/srv/p2")}}


def tasks(catalog: Catalog, kind: str, **values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of ``kind`` as ``task_data`` gives it, with ``VALUES`` unless overridden."""
    return {
        key: {
            "type": task_type,
            "values": values.get(key, VALUES.get(key, {})),
            "outputs": OUTPUTS.get(key, {}),
            "refs": REFS.get(key, {}),
        }
        for key, task_type in catalog.kinds[kind].tasks.items()
    }


def context(
    catalog: Catalog, plain: dict[str, Any], key: str, **values: dict[str, Any]
) -> TaskContext:
    """The context a worker gives the executor for task ``key`` of ``plain``."""
    every = tasks(catalog, plain["kind"], **values)
    typed = typed_input(catalog, plain, every, key)
    return TaskContext(
        run_id="r", attempt=1, key=key, task_type=every[key]["type"], values=typed.values,
        entity=typed.entity, tasks=typed.tasks, work_dir=Path("/nonexistent/work"), timeout=10,
        cancel_grace=1,
    )  # fmt: skip
