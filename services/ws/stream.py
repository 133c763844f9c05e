"""Where one socket is in its job's events: what to send, what to skip, when to replay, when it is done.

No sockets and no I/O here, so the delivery rule of docs/protocol.md is unit-tested on its
own (tests/unit/test_stream_cursor.py); jobcast.ws.consumers reads Redis and sends frames
as this says.
"""

from __future__ import annotations

import enum
from typing import Iterable, Iterator, NamedTuple

from jobcast.events.history import History, LiveState, StoredEvent
from jobcast.jobs.states import is_terminal


class Verdict(enum.Enum):
    SKIP = "skip"  # already sent (a duplicate), or the stream is finished
    SEND = "send"  # the next event
    GAP = "gap"  # later than the next: the ones between must come from history first


class Replay(NamedTuple):
    reset: bool  # send a reset snapshot instead: the client's state cannot be brought up to date
    events: list[StoredEvent]  # else these, in order
    finish: bool  # and then close (1000): the job ended and its last event is behind the client


class StreamCursor:
    """The last seq one socket was sent, and whether its job's stream is over for it."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.finished = False

    def verdict(self, seq: int) -> Verdict:
        """What to do with a live event numbered `seq`."""
        if self.finished or seq <= self.last_seq:
            return Verdict.SKIP
        return Verdict.SEND if seq == self.last_seq + 1 else Verdict.GAP

    def sent(self, seq: int, terminal: bool) -> None:
        """The event numbered `seq` went out; a terminal one ends the stream."""
        self.last_seq = seq
        self.finished = self.finished or terminal

    def sent_snapshot(self, seq: int, state: str) -> None:
        """A snapshot at `seq` went out; live events continue after it, or none for an ended job."""
        self.sent(seq, is_terminal(state))

    def unsent(self, events: Iterable[StoredEvent]) -> Iterator[StoredEvent]:
        """The events among `events` (in seq order) still to send, advancing as each is taken."""
        for event in events:
            if self.finished:
                return
            if event.seq <= self.last_seq:
                continue
            yield event
            self.sent(event.seq, event.terminal)

    def replay(self, after: int, history: History, live: LiveState | None, row_seq: int, row_state: str) -> Replay:
        """How to answer `?after=N`: the stored events after N, or a reset snapshot when they are gone.

        `history` holds the events after `after`; `live` is the job's live snapshot in Redis
        (None when Redis has nothing); `row_seq` and `row_state` are the job row's.
        """
        if not history.complete:
            return Replay(True, [], False)
        if not history.events and after > max(live.seq if live else 0, row_seq):
            return Replay(True, [], False)  # beyond the job's latest seq: the client's state is not this job's
        self.last_seq = after
        events = history.events
        if any(event.terminal for event in events) or not is_terminal(row_state) or history.last_seq < row_seq:
            return Replay(False, events, False)
        # The row is final but its terminal event was not among the stored ones. When Redis
        # shows it unpublished (the row is written first) or published after the history read,
        # it arrives live, as after a snapshot. Otherwise it is gone (history expired) or the
        # client has it: close once the stored events are out.
        terminal_published = live is not None and live.state is not None and is_terminal(live.state["state"])
        finish = live is None or (terminal_published and live.seq <= history.last_seq)
        return Replay(False, events, finish)
