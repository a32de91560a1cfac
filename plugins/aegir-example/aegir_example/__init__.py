"""An example plugin: entity, operation and task types added through ``aegir.catalog``."""

from __future__ import annotations

from pydantic import Field

from app.catalog.fields import Hostname, Port, SafeRelativePath
from app.catalog.registry import Catalog
from app.catalog.types import (
    EntityFields,
    EntityKind,
    OperationType,
    Reference,
    TaskFields,
    TaskType,
)


class CacheServerFields(EntityFields):
    listen_port: Port = Field(default=6081, description="Port the cache listens on.")


class PurgeFields(TaskFields):
    paths: list[SafeRelativePath] = Field(
        default=[], max_length=100, description="Paths to purge; all when empty."
    )


class CacheVerifyOutputs(TaskFields):
    answering: bool | None = None


def register(catalog: Catalog) -> None:
    catalog.add_task(
        TaskType("cache_purge", "Purge cache", PurgeFields, safe_to_rerun=True,
                 description="Purges the site's pages from its cache."),
        TaskType("cache_server_verify", "Verify cache server", outputs=CacheVerifyOutputs,
                 safe_to_rerun=True, description="Checks the cache answers."),
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
        )
    )
    catalog.extend_kind(
        "site",
        tasks={"purge": "cache_purge"},
        operations=[OperationType("purge_cache", "Purge cache", steps=("purge",))],
    )
