"""An example plugin: entity, operation and task types added through ``aegir.catalog``.

Its task types run Ansible roles shipped beside this module (``roles/``), with the
variables its own kind declares; it reuses the built-in server and site builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from pydantic import Field

from app.catalog.builtin.server import ServerVars, server_host, server_vars
from app.catalog.builtin.site.ansible import site_vars
from app.catalog.fields import Hostname, Port, SafeRelativePath
from app.catalog.inputs import EntityInput, TaskView
from app.catalog.registry import Catalog
from app.catalog.types import (
    AnsibleHosting,
    AnsibleRole,
    AnsibleVariables,
    EntityFields,
    EntityKind,
    Hosts,
    OperationType,
    Reference,
    TaskFields,
    TaskType,
)

ROLES = Path(__file__).resolve().parent / "roles"


class CacheServerFields(EntityFields):
    listen_port: Port = Field(default=6081, description="Port the cache listens on.")


class PurgeFields(TaskFields):
    paths: list[SafeRelativePath] = Field(
        default=[], max_length=100, description="Paths to purge; all when empty."
    )


class PurgeOutputs(TaskFields):
    purged: int | None = Field(default=None, description="How many cached pages were removed.")


class CacheVerifyOutputs(TaskFields):
    answering: bool | None = None


class CacheServerVars(TypedDict):
    """The ``cache_server`` variable of the cache server's roles."""

    name: str
    # The cache runs on the server the role runs on: checked over its loopback address.
    host: str
    port: int


def _cache_server_vars(view: TaskView) -> AnsibleVariables:
    cache = view.entity
    fields = cache.fields_as(CacheServerFields)
    server: ServerVars = server_vars(cache.reference("server"))
    cache_server: CacheServerVars = {
        "name": cache.name,
        "host": "127.0.0.1",
        "port": fields.listen_port,
    }
    return {"server": server, "cache_server": cache_server}


def _cache_server_hosts(cache: EntityInput) -> Hosts:
    return Hosts(server_host(cache.reference("server")))


def _purge_vars(view: TaskView) -> AnsibleVariables:
    """``purge``: the site's page cache directory (``cache/`` in the site's own directory)
    and the cached pages to remove there; all of them when no path is given."""
    cache_dir = f"{site_vars(view)['dir']}/cache"
    paths = view.values_of(view.key, PurgeFields).paths
    return {"purge": {"cache_dir": cache_dir, "paths": [f"{cache_dir}/{p}" for p in paths]}}


def register(catalog: Catalog) -> None:
    catalog.add_task(
        TaskType("cache_purge", "Purge cache", PurgeFields, PurgeOutputs,
                 AnsibleRole(roles=ROLES, variables=_purge_vars), safe_to_rerun=True,
                 description="Purges the site's pages from its cache."),
        TaskType("cache_server_verify", "Verify cache server", outputs=CacheVerifyOutputs,
                 executor=AnsibleRole(roles=ROLES), safe_to_rerun=True,
                 description="Checks the cache answers."),
    )  # fmt: skip
    catalog.add_kind(
        EntityKind(
            name="cache_server",
            label="Cache server",
            plural="cache-servers",
            fields=CacheServerFields,
            name_type=Hostname,
            references={"server": Reference("server", description="Where the cache runs.")},
            tasks={"verify": "cache_server_verify"},
            operations={"verify": OperationType("verify", "Verify", steps=("verify",))},
            description="A page cache in front of sites.",
            ansible=AnsibleHosting(hosts=_cache_server_hosts, variables=_cache_server_vars),
        )
    )
    catalog.extend_kind(
        "site",
        tasks={"purge": "cache_purge"},
        operations=[OperationType("purge_cache", "Purge cache", steps=("purge",))],
    )
