"""One more site operation per safe-to-rerun task, that runs that task alone, again.

Loaded by the idempotence tests' own stack (``AEGIR_CATALOG_MODULES``). The built-in
operations run these tasks once per state change (disable needs an enabled site) or
next to tasks that must not run twice (install creates the database); a lost worker's
run is run again as it is, and these operations do the same on purpose.
"""

from __future__ import annotations

from app.catalog.registry import Catalog
from app.catalog.types import OperationType

# Task keys of the site kind; ``verify`` has an operation of its own already.
AGAIN = ("files", "settings", "vhost", "disable", "enable", "login")


def register(catalog: Catalog) -> None:
    catalog.extend_kind(
        "site",
        operations=[
            OperationType(f"again_{key}", f"Run {key} again", steps=(key,)) for key in AGAIN
        ],
    )
