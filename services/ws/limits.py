"""The open sockets of one ws process: limits (1013 full, 4429 per user) and draining (1012).

Counts are per process (each ws process enforces its own share); see docs/protocol.md.
"""

from __future__ import annotations

from collections import Counter

from jobcast.conf import option
from jobcast.events.schema import CloseCode
from jobcast.metrics import ws_connections, ws_connections_opened


class ConnectionBook:
    """Open sockets of this process, in total and per user, and whether it is draining."""

    def __init__(self):
        self.total = 0
        self.per_user: Counter = Counter()
        self.consumers: set = set()
        self.draining = False

    def refusal(self, user_id) -> int | None:
        """The close code to refuse a new socket of this user with, or None to admit it."""
        if self.draining:
            return CloseCode.SERVER_RESTARTING
        if self.total >= option("WS_MAX_CONNECTIONS"):
            return CloseCode.OVERLOADED
        if self.per_user[user_id] >= option("WS_MAX_CONNECTIONS_PER_USER"):
            return CloseCode.TOO_MANY_CONNECTIONS
        return None

    def open(self, consumer, user_id) -> None:
        """Count a newly admitted socket."""
        self.total += 1
        self.per_user[user_id] += 1
        self.consumers.add(consumer)
        ws_connections.inc()
        ws_connections_opened.inc()

    def close(self, consumer, user_id) -> None:
        """Forget a closed socket."""
        self.total -= 1
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]
        self.consumers.discard(consumer)
        ws_connections.dec()


connections = ConnectionBook()
