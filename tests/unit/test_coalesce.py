"""Coalescing: at most N values per second, the latest one wins, nothing held forever."""

from jobcast.jobs.coalesce import Coalescer


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_unlimited_rate_sends_everything():
    c = Coalescer(0, FakeClock())
    assert [c.offer(n) for n in range(5)] == [0, 1, 2, 3, 4]
    assert c.due_in() is None


def test_values_inside_the_interval_are_held_and_the_latest_wins():
    clock = FakeClock()
    c = Coalescer(10, clock)  # one value per 0.1 s
    assert c.offer(1) == 1
    clock.now += 0.02
    assert c.offer(2) is None
    clock.now += 0.02
    assert c.offer(3) is None
    assert c.due_in() == pytest_approx(0.06)
    assert c.take_due() is None  # not due yet
    clock.now += 0.06
    assert c.take_due() == 3  # 2 was superseded
    assert c.take_due() is None


def test_force_takes_the_pending_value_early():
    clock = FakeClock()
    c = Coalescer(1, clock)
    c.offer("a")
    c.offer("b")
    assert c.take_due(force=True) == "b"
    assert c.due_in() is None


def test_rate_over_a_long_run_stays_at_the_limit():
    clock = FakeClock()
    c = Coalescer(20, clock)
    sent = 0
    for _ in range(10_000):  # 10 s of calls every millisecond
        clock.now += 0.001
        if c.offer(1) is not None or c.take_due() is not None:
            sent += 1
    assert 195 <= sent <= 201


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=1e-9)
