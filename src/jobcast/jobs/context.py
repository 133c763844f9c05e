"""The job author's context: `ctx.progress`, `ctx.log`, `ctx.check_cancelled`, `ctx.sleep`.

Progress is coalesced (jobcast.jobs.coalesce); a held value is sent by a small flusher
thread when its interval ends, so the latest value is never stuck behind a long step.
Log and state events first flush any held progress, so events stay in call order.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from jobcast.events.schema import LogEvent, Progress, ProgressEvent
from jobcast.jobs.coalesce import Coalescer


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested; the job ends `cancelled`."""


class JobContext:
    """What a job function receives as `ctx`."""

    def __init__(
        self,
        job_id: str,
        owner_id: int,
        *,
        publish: Callable,
        cancel_requested: Callable[[], bool],
        max_rate: float,
        cancel_check_interval: float,
        attempt: int = 1,
    ):
        self.job_id = job_id
        self.owner_id = owner_id
        self.attempt = attempt
        self._publish = publish
        self._cancel_requested = cancel_requested
        self._cancel_check_interval = cancel_check_interval
        self._last_cancel_check = float("-inf")
        self._cancelled = False
        self._coalescer: Coalescer[ProgressEvent] = Coalescer(max_rate)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._closed = False
        self._flusher: threading.Thread | None = None
        self.latest_progress: Progress | None = None
        self.last_seq = 0

    # -- the author API -------------------------------------------------------------

    def progress(self, current: float | int, total: float | int | None = None, message: str | None = None) -> None:
        """Report progress; cheap at any rate (coalesced). Raises JobCancelled when cancelled."""
        self.check_cancelled()
        progress = Progress.of(current, total, message)
        event = ProgressEvent(job_id=self.job_id, ts=time.time(), **progress.model_dump())
        with self._lock:
            self.latest_progress = progress
            to_send = self._coalescer.offer(event)
            if to_send is not None:
                self._send(to_send)
            else:
                self._ensure_flusher()
                self._wakeup.notify()

    def log(self, message: str) -> None:
        """Publish a log line to the job's watchers."""
        with self._lock:
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

    def publish_locked(self, event, **kwargs):
        """Publish an event after any held progress, in order with the author's events."""
        with self._lock:
            self._flush_pending()
            return self._send(event, **kwargs)

    def close(self) -> None:
        """Send any held progress and stop the flusher thread."""
        with self._lock:
            self._flush_pending()
            self._closed = True
            self._wakeup.notify()
        if self._flusher is not None:
            self._flusher.join(timeout=5)

    # -- internals ------------------------------------------------------------------

    def _send(self, event, **kwargs):
        published = self._publish(event, self.owner_id, **kwargs)
        self.last_seq = published.seq
        return published

    def _flush_pending(self) -> None:
        value = self._coalescer.take_due(force=True)
        if value is not None:
            self._send(value)

    def _ensure_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name=f"progress-{self.job_id}", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        with self._lock:
            while not self._closed:
                due = self._coalescer.due_in()
                if due is None or due > 0:
                    self._wakeup.wait(timeout=due)
                    continue
                value = self._coalescer.take_due()
                if value is not None:
                    self._send(value)
