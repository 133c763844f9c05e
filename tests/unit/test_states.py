"""The state machine allows exactly the contract's transitions."""

import itertools

import pytest

from jobcast.jobs.states import State, can_transition, is_terminal, sources_of

ALLOWED = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
}


@pytest.mark.parametrize("current,target", list(itertools.product([s.value for s in State], repeat=2)))
def test_only_the_contract_transitions_are_allowed(current, target):
    assert can_transition(current, target) == ((current, target) in ALLOWED)


def test_terminal_states_are_final():
    assert {s for s in State if is_terminal(s)} == {State.SUCCEEDED, State.FAILED, State.CANCELLED}
    assert sources_of("cancelled") == ["queued", "running"]
    assert sources_of("running") == ["queued"]
    assert sources_of("queued") == []
