"""Fault injection for the fault tests: die at a named point, the Nth time it is reached.

``AEGIR_FAULT_EXIT=<point>:<n>`` makes the process exit the ``n``-th time the code
reaches ``point``, with ``os._exit``: as abrupt as a SIGKILL (no rollback sent, no
answer, no cleanup), but at a chosen instant rather than a random one. Unset (always,
outside the tests), a call costs one comparison.

Points: ``api-before-commit`` and ``api-after-commit``, around the commit of each
writing API request (``app.api.deps``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter

logger = logging.getLogger(__name__)

FAULT_EXIT_CODE = 70


def _plan(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, count = value.rpartition(":")
    return point, int(count)


_PLAN = _plan(os.environ.get("AEGIR_FAULT_EXIT", ""))
_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Exit here if the fault plan says so; otherwise nothing."""
    if _PLAN is None or _PLAN[0] != name:
        return
    _reached[name] += 1
    if _reached[name] == _PLAN[1]:
        logger.error("fault injected: exiting at %s (time %d)", name, _PLAN[1])
        os._exit(FAULT_EXIT_CODE)
