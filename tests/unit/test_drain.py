"""The ws tier's drain (jobcast.ws.server.drain_sockets): 1012 closes in batches spread over the window."""

from __future__ import annotations

import os

import time

import pytest

from jobcast.ws import server
from jobcast.ws.limits import connections


class FakeConsumer:
    """Records when it was closed and with which code."""

    def __init__(self, closes: list, fails: bool = False):
        self.closes, self.fails = closes, fails

    async def close(self, code: int) -> None:
        self.closes.append((time.monotonic(), code))
        if self.fails:
            raise ConnectionResetError("already gone")


@pytest.fixture
def book(monkeypatch):
    """A fresh set of open sockets for this process, restored afterwards."""
    monkeypatch.setattr(connections, "consumers", set())
    monkeypatch.setattr(connections, "draining", False)
    return connections


def batches_of(closes: list, started: float, gap: float = 0.08) -> list[tuple[float, int]]:
    """(start offset, size) of each burst of closes: closes less than `gap` apart are one batch."""
    found: list[list] = []
    for at, _ in sorted(closes):
        if found and at - found[-1][1] < gap:
            found[-1][1] = at
            found[-1][2] += 1
        else:
            found.append([at, at, 1])
    return [(round(first - started, 2), size) for first, _, size in found]


async def drain(book, count: int, window: float, step: float = 0.25, failing: int = 0):
    closes: list = []
    book.consumers.update(FakeConsumer(closes, fails=i < failing) for i in range(count))
    started = time.monotonic()
    await server.drain_sockets(window, step=step)
    return closes, started, time.monotonic() - started


async def test_closes_come_in_batches_spread_over_the_window(book):
    closes, started, took = await drain(book, 20, window=1.0)
    assert book.draining is True
    assert {code for _, code in closes} == {1012} and len(closes) == 20
    found = batches_of(closes, started)
    assert [size for _, size in found] == [5, 5, 5, 5], found
    for k, (offset, _) in enumerate(found):
        assert offset == pytest.approx(k * 0.25, abs=0.07), found
    # Not all at once: the last batch goes out three quarters into the window, and the
    # drain ends with it (no sleep after the last batch).
    assert 0.7 <= took < 0.95


async def test_fewer_sockets_than_steps_are_still_spread_over_the_window(book):
    closes, started, _ = await drain(book, 3, window=1.0)
    found = batches_of(closes, started)
    assert [size for _, size in found] == [1, 1, 1], found
    for k, (offset, _) in enumerate(found):
        assert offset == pytest.approx(k / 3, abs=0.07), found


async def test_a_batch_never_exceeds_its_share(book):
    """50 sockets over 2 s at one batch per 0.25 s: 8 batches of at most 7, the last one near the end."""
    closes, started, took = await drain(book, 50, window=2.0)
    found = batches_of(closes, started)
    assert len(found) == 8 and max(size for _, size in found) == 7 and sum(s for _, s in found) == 50, found
    assert found[-1][0] == pytest.approx(1.75, abs=0.1) and took < 2.0


async def test_a_zero_window_closes_everything_at_once(book):
    closes, started, took = await drain(book, 30, window=0)
    assert len(closes) == 30 and took < 0.05
    assert batches_of(closes, started) == [(0.0, 30)]


async def test_a_socket_that_is_already_gone_does_not_stop_the_drain(book):
    closes, _, _ = await drain(book, 6, window=0.3, failing=3)
    assert len(closes) == 6


def test_the_shutdown_grace_comes_from_the_settings(settings):
    assert server.make_config([]).timeout_graceful_shutdown == 10.0
    settings.JOBCAST = {**settings.JOBCAST, "WS_SHUTDOWN_GRACE_SECONDS": 3.5}
    assert server.make_config([]).timeout_graceful_shutdown == 3.5


def test_settings_take_the_shutdown_grace_from_the_environment():
    import subprocess
    import sys

    code = "from jobcast import django_setup; django_setup(); " \
           "from jobcast.conf import option; print(option('WS_SHUTDOWN_GRACE_SECONDS'))"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "JOBCAST_WS_SHUTDOWN_GRACE_SECONDS": "3.5"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3.5"
