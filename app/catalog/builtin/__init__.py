"""The built-in entity kinds of the VM back-end: servers, platforms and sites."""

from app.catalog.builtin import platform, server, site
from app.catalog.registry import Catalog


def register_builtins(catalog: Catalog) -> None:
    server.register(catalog)
    platform.register(catalog)
    site.register(catalog)
