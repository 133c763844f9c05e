"""Coalescing of progress updates to at most N per second per job, latest value winning."""

from __future__ import annotations

import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Decides which offered values to send so that at most `max_rate` go out per second.

    A value offered inside the quiet interval is held as pending (replacing any older
    pending one) and becomes due when the interval ends. Not thread-safe; the caller locks.
    """

    def __init__(self, max_rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.clock = clock
        self.pending: T | None = None
        self.last_sent_at: float | None = None
        self.replaced = 0  # values dropped for a newer one (never sent); the owner reads and resets it

    def offer(self, value: T) -> T | None:
        """Offer a new value; returns it when it should be sent now, else holds it as pending."""
        now = self.clock()
        if self.pending is not None:
            self.replaced += 1  # the held value will never be sent: this one supersedes it
        if self.last_sent_at is None or now - self.last_sent_at >= self.interval:
            self.pending = None
            self.last_sent_at = now
            return value
        self.pending = value
        return None

    def due_in(self) -> float | None:
        """Seconds until the pending value is due (0 when due now), None when nothing is pending."""
        if self.pending is None:
            return None
        return max(0.0, self.last_sent_at + self.interval - self.clock())

    def take_due(self, force: bool = False) -> T | None:
        """The pending value if it is due (or `force`), marking it sent."""
        due = self.due_in()
        if due is None or (due > 0 and not force):
            return None
        value, self.pending = self.pending, None
        self.last_sent_at = self.clock()
        return value
