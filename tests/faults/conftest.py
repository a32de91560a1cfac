"""The slow tier: faults injected into the whole system, on both databases.

Uses the end-to-end tier's stack fixtures (one running system per database).
"""

from tests.e2e.conftest import live, stack

__all__ = ["live", "stack"]
