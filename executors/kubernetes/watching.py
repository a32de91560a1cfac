"""Watches that resume: a 410 Gone (the server compacted past our resourceVersion) is
answered by reading the object again and watching on from what was read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from executors.kubernetes.client import RESOURCES, Kube, Object


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again, then watch on."""


async def events(
    kube: Kube,
    kind: str,
    namespace: str | None,
    *,
    fields: str | None = None,
    labels: str | None = None,
    resource_version: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """``{"type", "object"}`` events of one watch request, until the server ends it."""
    query = [("watch", "true"), ("allowWatchBookmarks", "true")]
    if fields:
        query.append(("fieldSelector", fields))
    if labels:
        query.append(("labelSelector", labels))
    if resource_version:
        query.append(("resourceVersion", resource_version))
    async with kube.stream(RESOURCES[kind].path(namespace), query) as body:
        while line := await body.readline():
            if not line.strip():
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object", {})
                if status.get("code") == 410:
                    raise Gone(status.get("message", "gone"))
                raise RuntimeError(f"watch error: {status.get('message', status)}")
            yield event


async def follow(
    kube: Kube, kind: str, namespace: str | None, name: str
) -> AsyncIterator[Object | None]:
    """Every state of one object as it changes (``None``: deleted), for ever.

    Starts from a read; resumes after a 410 or a closed watch from a fresh read, so no
    change between two watches is missed.
    """
    while True:
        current = await kube.get(kind, name, namespace)
        yield current
        version = (current or {}).get("metadata", {}).get("resourceVersion")
        try:
            async for event in events(
                kube, kind, namespace, fields=f"metadata.name={name}", resource_version=version
            ):
                if event["type"] == "BOOKMARK":
                    continue
                if event["object"].get("metadata", {}).get("name") != name:
                    continue
                yield None if event["type"] == "DELETED" else event["object"]
        except Gone:
            continue
