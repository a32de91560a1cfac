"""The built-in entity kinds: servers, platforms and sites (VM back-end); clusters,
projects, releases and environments (Kubernetes back-end)."""

from app.catalog.builtin import kubernetes, platform, server, site
from app.catalog.registry import Catalog


def register_builtins(catalog: Catalog) -> None:
    server.register(catalog)
    platform.register(catalog)
    site.register(catalog)
    kubernetes.register(catalog)
