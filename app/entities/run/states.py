"""A run's statuses and the moves between them: the one state machine every process calls.

The API (cancel), the worker (claim, renew, finish), the relay (finish, from the exit
event) and the sweeper (settle an expired lease) all move runs through
``app.entities.run.repository``, whose one fenced UPDATE checks each move here first.
No queries here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

from app.errors import Conflict


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    lost = "lost"


class TaskStatus(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


# A worker holds the run's lease: its entity is busy, nothing else of it may start.
ACTIVE = frozenset({RunStatus.running, RunStatus.cancelling})
# Ended: history, never moved again.
FINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.lost})
# How a worker may say its run ended (``lost`` is only ever the sweeper's verdict).
ENDINGS = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})


class Move(StrEnum):
    """The transitions; each is one function of ``app.entities.run.repository``."""

    claim = "claim"
    renew = "renew"
    cancel = "cancel"
    finish = "finish"
    # The lease expired: the worker is gone.
    lose = "lose"
    requeue = "requeue"


def _to(*statuses: RunStatus) -> frozenset[RunStatus]:
    return frozenset(statuses)


# For each move: from which status it may start, and to which it may lead.
MOVES: Mapping[Move, Mapping[RunStatus, frozenset[RunStatus]]] = {
    Move.claim: {RunStatus.queued: _to(RunStatus.running)},
    # Extends the lease; the status stays.
    Move.renew: {status: _to(status) for status in ACTIVE},
    # A queued run ends at once; a running one is asked to stop.
    Move.cancel: {
        RunStatus.queued: _to(RunStatus.cancelled),
        RunStatus.running: _to(RunStatus.cancelling),
    },
    Move.finish: {RunStatus.running: ENDINGS, RunStatus.cancelling: ENDINGS},
    # A cancel asked for is what a run whose worker is gone ends as.
    Move.lose: {
        RunStatus.running: _to(RunStatus.lost),
        RunStatus.cancelling: _to(RunStatus.cancelled),
    },
    # Only a running run, and only when every task is safe to run again: by the sweeper
    # (its worker is gone), or by its worker handing it back as it shuts down.
    Move.requeue: {RunStatus.running: _to(RunStatus.queued)},
}


class IllegalMove(Conflict):
    """A move the state machine does not allow; the API answers 409."""


def check(move: Move, current: str, new: str) -> None:
    """Raise ``IllegalMove`` unless ``move`` takes a ``current`` run to ``new``."""
    if RunStatus(new) not in MOVES[move].get(RunStatus(current), frozenset()):
        if current in FINAL:
            raise IllegalMove(f"the run has already ended: {current}")
        raise IllegalMove(f"cannot {move} a {current} run (to {new})")


def sources(move: Move, new: str | None = None) -> frozenset[RunStatus]:
    """The statuses ``move`` starts from (those leading to ``new``, if given): its fence."""
    found = frozenset(
        status for status, targets in MOVES[move].items() if new is None or new in targets
    )
    if not found:
        raise IllegalMove(f"no run can {move} to {new}")
    return found


def after_expired_lease(
    status: str, attempt: int, unsafe: Collection[str], max_attempts: int
) -> tuple[Move, RunStatus, str]:
    """Lose or requeue a run whose worker stopped renewing its lease: the move, where
    it leads, and why. ``unsafe``: the run's task types that are not safe to run again;
    ``max_attempts``: how many attempts a run gets before it is lost for good (a task
    that kills its worker every time would otherwise be run for ever).
    """
    gone = f"its worker stopped renewing the lease during attempt {attempt} (worker gone)"
    if status == RunStatus.cancelling:
        return Move.lose, RunStatus.cancelled, f"cancelled; {gone}, so the lease settled it"
    if unsafe:
        why = f"{gone}; not run again, as {', '.join(sorted(set(unsafe)))} is not safe to re-run"
        return Move.lose, RunStatus.lost, why
    if attempt >= max_attempts:
        why = f"{gone}; not run again: {attempt} attempts lost their worker, the most allowed"
        return Move.lose, RunStatus.lost, why
    return Move.requeue, RunStatus.queued, f"{gone}; running it again"
