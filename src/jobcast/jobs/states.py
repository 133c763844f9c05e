"""The job state machine: the contract's transitions and nothing else.

`job_transition` in jobcast.jobs.services is the only code that changes a job's state;
it asks this table which transitions are valid.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED}),
    State.RUNNING: frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    """Whether the contract allows a job in `current` to move to `target`."""
    return State(target) in TRANSITIONS[State(current)]


def sources_of(target: str) -> list[str]:
    """The states from which `target` can be reached."""
    return [str(s) for s, targets in TRANSITIONS.items() if State(target) in targets]


def is_terminal(state: str) -> bool:
    """Whether `state` is final."""
    return State(state) in TERMINAL
