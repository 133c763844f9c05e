"""The job author's context: `ctx.progress`, `ctx.log`, `ctx.check_cancelled`, `ctx.sleep`.

Progress is coalesced (jobcast.jobs.coalesce); a held value is sent by a small flusher
thread when its interval ends, so the latest value is never stuck behind a long step.
Log and state events first flush any held progress, so events stay in call order.

Events that come faster than one per BATCH_WINDOW_SECONDS (a tight loop with
JOBCAST_PROGRESS_MAX_RATE=0, a burst of logs) are published together, in order, in one
round trip: the first event after a quiet spell goes out at once, the ones right behind it
wait at most the window (docs/events.md). Nothing is dropped by this, only grouped.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from jobcast.events.publisher import JobPublisher
from jobcast.events.schema import LogEvent, Progress, ProgressEvent
from jobcast.jobs.coalesce import Coalescer
from jobcast.metrics import progress_coalesced

# One round trip per event costs a tight loop ~0.1-0.2 ms each (bench C): grouping the events
# of one millisecond cuts that to a share of one round trip, for at most 1 ms more latency.
BATCH_WINDOW_SECONDS = 0.001
BATCH_MAX_EVENTS = 500  # a bound on one publish's size (~100 KB of events)


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested; the job ends `cancelled`."""


class JobContext:
    """What a job function receives as `ctx`."""

    def __init__(
        self,
        publisher: JobPublisher,
        *,
        cancel_requested: Callable[[], bool],
        max_rate: float,
        cancel_check_interval: float,
        attempt: int = 1,
    ):
        self.job_id = publisher.job_id
        self.owner_id = publisher.owner_id
        self.attempt = attempt
        self._publisher = publisher
        self._cancel_requested = cancel_requested
        self._cancel_check_interval = cancel_check_interval
        self._last_cancel_check = float("-inf")
        self._cancelled = False
        self._coalescer: Coalescer[ProgressEvent] = Coalescer(max_rate)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._closed = False
        self._flusher: threading.Thread | None = None
        self._outbox: list = []  # events waiting for the batch window, in call order
        self._last_publish = float("-inf")
        self._failure: Exception | None = None  # the flusher's publish failed (Redis stayed away)

    # -- the author API -------------------------------------------------------------

    def progress(self, current: float | int, total: float | int | None = None, message: str | None = None) -> None:
        """Report progress; cheap at any rate (coalesced). Raises JobCancelled when cancelled."""
        self.check_cancelled()
        progress = Progress.of(current, total, message)
        event = ProgressEvent(job_id=self.job_id, ts=time.time(), **progress.model_dump())
        with self._lock:
            self._raise_failure()
            was_holding = self._coalescer.pending is not None
            to_send = self._coalescer.offer(event)
            if to_send is not None:
                self._send(to_send)
            elif not was_holding:
                self._wake_flusher()  # a new deadline; a replaced held value keeps the old one

    def log(self, message: str) -> None:
        """Publish a log line to the job's watchers."""
        with self._lock:
            self._raise_failure()
            self._flush_pending()
            self._send(LogEvent(job_id=self.job_id, ts=time.time(), message=str(message)))

    def check_cancelled(self) -> None:
        """Raise JobCancelled when the job's cancellation was requested (checked at most every 0.2 s)."""
        if self._cancelled:
            raise JobCancelled()
        now = time.monotonic()
        if now - self._last_cancel_check >= self._cancel_check_interval:
            self._last_cancel_check = now
            if self._cancel_requested():
                self._cancelled = True
                raise JobCancelled()

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early enough to notice a cancellation within the check interval."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, self._cancel_check_interval))

    # -- for the runner ---------------------------------------------------------------

    def close(self) -> None:
        """Send any held progress and stop the flusher thread."""
        try:
            with self._lock:
                self._raise_failure()
                self._flush_pending()
                self._publish_outbox()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Stop the flusher thread without sending what is held (the attempt is given up)."""
        with self._lock:
            self._closed = True
            self._wakeup.notify()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)

    # -- internals (called with the lock held) --------------------------------------

    def _send(self, event) -> None:
        """Queue an event: published now after a quiet spell, else within the batch window."""
        self._outbox.append(event)
        if len(self._outbox) >= BATCH_MAX_EVENTS or self._outbox_due_in() == 0:
            self._publish_outbox()
        elif len(self._outbox) == 1:
            self._wake_flusher()  # a new deadline; later events share it

    def _outbox_due_in(self) -> float | None:
        """Seconds until the outbox must go out (0: now), None when it is empty."""
        if not self._outbox:
            return None
        return max(0.0, self._last_publish + BATCH_WINDOW_SECONDS - time.monotonic())

    def _publish_outbox(self) -> None:
        if self._coalescer.replaced:  # counted here, once per publish, not per progress call
            progress_coalesced.inc(self._coalescer.replaced)
            self._coalescer.replaced = 0
        if not self._outbox:
            return
        events, self._outbox = self._outbox, []
        self._publisher.publish(events)
        self._last_publish = time.monotonic()

    def _flush_pending(self) -> None:
        value = self._coalescer.take_due(force=True)
        if value is not None:
            self._outbox.append(value)

    def _wake_flusher(self) -> None:
        """Start the flusher thread, or have it look at its deadlines again."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name=f"progress-{self.job_id}", daemon=True)
            self._flusher.start()
        self._wakeup.notify()

    def _flush_loop(self) -> None:
        with self._lock:
            while not self._closed:
                dues = [due for due in (self._coalescer.due_in(), self._outbox_due_in()) if due is not None]
                if not dues or min(dues) > 0:
                    self._wakeup.wait(timeout=min(dues) if dues else None)
                    continue
                value = self._coalescer.take_due()
                if value is not None:
                    self._outbox.append(value)
                if self._outbox_due_in() == 0:
                    try:
                        self._publish_outbox()
                    except Exception as exc:  # noqa: BLE001 - raised in the job's own thread, at its next call
                        self._failure = exc
                        return

    def _raise_failure(self) -> None:
        """Raise in the job's thread what made the flusher's publish fail."""
        if self._failure is not None:
            raise self._failure
