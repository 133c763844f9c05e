"""The author's context: coalesced progress, ordered logs, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from jobcast.events.publisher import JobPublisher, Published
from jobcast.jobs.context import BATCH_MAX_EVENTS, JobCancelled, JobContext


class RecordingPublisher(JobPublisher):
    """A job's publish handle that records instead of reaching Redis."""

    def __init__(self):
        super().__init__("job-1", 1)
        self.events = []
        self.calls = []  # how many events each publish carried
        self.lock = threading.Lock()

    def publish(self, events):
        with self.lock:
            self.events.extend(events)
            self.calls.append(len(events))
            self.seq = len(self.events)
            return Published(self.seq, 1)


def make_ctx(rate=0.0, cancelled=lambda: False, publisher=None):
    publisher = publisher or RecordingPublisher()
    ctx = JobContext(publisher, cancel_requested=cancelled, max_rate=rate, cancel_check_interval=0.01)
    return ctx, publisher


def test_every_progress_is_published_without_a_rate_limit():
    ctx, pub = make_ctx(rate=0)
    for n in range(1, 51):
        ctx.progress(n, total=50)
    ctx.close()
    assert [e.current for e in pub.events] == list(range(1, 51))
    assert pub.events[-1].percent == 100.0
    assert pub.seq == 50


def test_a_tight_loop_without_a_rate_limit_is_published_in_batches_in_order():
    ctx, pub = make_ctx(rate=0)
    for n in range(1, 2001):
        ctx.progress(n, total=2000)
        if n == 1:
            assert pub.calls == [1]  # the first event after a quiet spell goes out at once
    ctx.log("done")
    ctx.close()
    assert [e.current for e in pub.events[:-1]] == list(range(1, 2001)) and pub.events[-1].message == "done"
    assert len(pub.calls) < 2000 / 5  # grouped, many events per round trip
    assert max(pub.calls) <= BATCH_MAX_EVENTS
    assert pub.seq == 2001


def test_events_behind_a_publish_go_out_within_the_window_without_another_call():
    ctx, pub = make_ctx(rate=0)
    ctx.progress(1)
    ctx.progress(2)  # inside the window: waits for it
    ctx.log("three")
    deadline = time.monotonic() + 2
    while len(pub.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert [getattr(e, "current", None) or e.message for e in pub.events] == [1, 2, "three"]
    assert pub.calls == [1, 2]
    ctx.close()


def test_a_fast_loop_is_coalesced_and_the_last_value_is_published():
    ctx, pub = make_ctx(rate=5)
    for n in range(1, 10_001):
        ctx.progress(n, total=10_000, message=f"step {n}")
    ctx.close()
    assert len(pub.events) < 10
    assert pub.events[-1].current == 10_000 and pub.events[-1].message == "step 10000"


def test_a_held_value_is_flushed_when_the_job_goes_quiet():
    ctx, pub = make_ctx(rate=20)
    ctx.progress(1)
    ctx.progress(2)  # held: inside the 50 ms interval
    deadline = time.monotonic() + 2
    while len(pub.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.current for e in pub.events] == [1, 2]
    ctx.close()


def test_log_flushes_held_progress_first_so_events_keep_call_order():
    ctx, pub = make_ctx(rate=1)
    ctx.progress(1)
    ctx.progress(2)
    ctx.log("done")
    ctx.close()
    assert [(e.type, getattr(e, "current", None)) for e in pub.events] == [("progress", 1), ("progress", 2), ("log", None)]


def test_cancellation_raises_in_progress_and_check_and_sleep():
    flag = {"set": False}
    ctx, _ = make_ctx(cancelled=lambda: flag["set"])
    ctx.progress(1)
    flag["set"] = True
    time.sleep(0.02)
    with pytest.raises(JobCancelled):
        ctx.progress(2)
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()
    ctx2, _ = make_ctx(cancelled=lambda: True)
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        ctx2.sleep(30)
    assert time.monotonic() - started < 5
    ctx.close()
    ctx2.close()


def test_percent_is_null_without_a_total():
    ctx, pub = make_ctx()
    ctx.progress(3)
    ctx.close()
    assert pub.events[0].percent is None and pub.events[0].total is None
