"""Connection limits of one ws process: 1013 when the process is full, 4429 per user.

Counts are per process (each ws process enforces its own share); see docs/protocol.md.
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings


class ConnectionBook:
    """Open sockets of this process, in total and per user."""

    def __init__(self):
        self.total = 0
        self.per_user: Counter = Counter()

    def refusal(self, user_id) -> int | None:
        """The close code to refuse a new socket of this user with, or None to admit it."""
        if self.total >= settings.JOBCAST["WS_MAX_CONNECTIONS"]:
            return 1013
        if self.per_user[user_id] >= settings.JOBCAST["WS_MAX_CONNECTIONS_PER_USER"]:
            return 4429
        return None

    def open(self, user_id) -> None:
        """Count a newly admitted socket."""
        self.total += 1
        self.per_user[user_id] += 1

    def close(self, user_id) -> None:
        """Forget a closed socket."""
        self.total -= 1
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]


connections = ConnectionBook()
