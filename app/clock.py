"""The schedules' clock: real time, or a fast one for the tests.

``AEGIR_FAST_CLOCK=<epoch>:<speed>`` (tests only, in the style of ``app.faults``)
makes time run ``speed`` times faster from the instant ``epoch`` (seconds since 1970,
real time): every process given the same value agrees on the time, so two
schedulers see the same slots come due, and a day of hourly slots passes in seconds.
Unset (always, outside the tests), ``now()`` is the real time.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def _plan(value: str) -> tuple[float, float] | None:
    if not value:
        return None
    epoch, _, speed = value.partition(":")
    return float(epoch), float(speed or 1)


_PLAN = _plan(os.environ.get("AEGIR_FAST_CLOCK", ""))


def now() -> datetime:
    """The current instant, in UTC, as the schedules count it."""
    real = time.time()
    if _PLAN is not None:
        epoch, speed = _PLAN
        real = epoch + (real - epoch) * speed
    return datetime.fromtimestamp(real, UTC)


def speed() -> float:
    """How many seconds of schedule time pass in one real second."""
    return 1.0 if _PLAN is None else _PLAN[1]
