"""The browser tier's fixtures (a chromium, the system as processes), and a cluster: the
kmock emulator served from a thread, that the worker reaches over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.conftest import browser, page, site_stack  # noqa: F401 (fixtures)
from tests.fixtures.kmock_thread import ThreadedCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThreadedCluster]:
    threaded = ThreadedCluster()
    threaded.start()
    try:
        yield threaded
    finally:
        threaded.stop()
