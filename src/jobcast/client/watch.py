"""Follow one job's event stream over WebSocket, resuming with `?after=<last seq>` after any drop.

`JobWatch` is the protocol's "Writing a client" recipe (docs/protocol.md) in Python: an
async iterator of the job's messages — its snapshot, then each event once, in seq order —
that reconnects with exponential backoff and jitter, de-duplicates by seq, takes a
`reset` snapshot in place of what it held, and stops after the terminal event.
`Client.watch` makes one; `jobcast watch` and `jobcast submit --follow` iterate it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime
from typing import AsyncIterator, Callable, Union
from urllib.parse import urlsplit, urlunsplit

import websockets
from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from jobcast.events.schema import (CloseCode, Event, JobDocument, SnapshotMessage, StateEvent,
                                   parse_event)
from jobcast.jobs.states import is_terminal

Message = Union[SnapshotMessage, Event]
"""What a watch yields: a `SnapshotMessage`, or a `ProgressEvent`, `LogEvent` or `StateEvent`."""

# Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
FATAL_CLOSES = {
    CloseCode.NOT_AUTHENTICATED: "not authenticated: the token was refused (create one with `jobcast token <username> --save`)",
    CloseCode.NOT_FOUND: "not found: no such job (or it is not yours)",
    CloseCode.FORBIDDEN: "forbidden: this stream is for staff users only",
    CloseCode.POLICY_VIOLATION: "refused by the server (policy violation)",
    CloseCode.MESSAGE_TOO_BIG: "refused by the server (message too big)",
}
# Why a connection ended, for the retry message (the rest reconnect with `after`).
CLOSE_REASONS = {
    1006: "connection lost",
    CloseCode.SERVER_RESTARTING: "server restarting",
    CloseCode.OVERLOADED: "server overloaded",
    CloseCode.TOO_SLOW: "reader too slow",
    CloseCode.TOO_MANY_CONNECTIONS: "too many connections",
}


class WatchError(Exception):
    """Watching stopped for good: `reason` for people; `close_code` or `status` when the server
    refused (4401, 4404, an HTTP 4xx on the handshake ...), `gave_up` when it could not be reached."""

    def __init__(self, reason: str, *, close_code: int | None = None, status: int | None = None,
                 gave_up: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.status = status
        self.gave_up = gave_up


def ws_url_for(http_url: str, job_id: str) -> str:
    """The job's stream URL derived from the server's HTTP URL (http→ws, https→wss)."""
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"server URL must start with http:// or https://, not {http_url!r}")
    return urlunsplit((scheme, parts.netloc, f"{parts.path.rstrip('/')}/ws/jobs/{job_id}/", "", ""))


class Backoff:
    """Exponential delays with jitter, and a deadline for a run of failures."""

    def __init__(self, initial: float = 0.5, cap: float = 10.0, give_up_after: float = 120.0):
        self.initial, self.cap, self.give_up_after = initial, cap, give_up_after
        self.failures = 0
        self.failing_since: float | None = None

    def reset(self) -> None:
        """The connection works again: the next failure starts from the shortest delay."""
        self.failures = 0
        self.failing_since = None

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt; None once failures have lasted too long."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        ceiling = min(self.cap, self.initial * 2**self.failures)
        self.failures += 1
        # Jitter spreads the reconnects of many clients dropped by the same restart.
        delay = random.uniform(ceiling / 2, ceiling)
        if now + delay - self.failing_since > self.give_up_after:
            return None
        return delay


def _ended(state) -> bool:
    """Whether a state read off the wire is a terminal one (an unknown one is not)."""
    try:
        return is_terminal(state)
    except ValueError:
        return False


class JobWatch:
    """One job's messages, each once and in order, until its terminal event (an async iterator).

    `after`: the last seq the caller already has (its events are not sent again; without
    it the first message is a snapshot). `on_retry(reason, delay)` is called before each
    reconnect. After the iteration, `job` is the job's document with every event folded in
    (None when it started with `after` and no reset snapshot came) and `final` its terminal
    `StateEvent`, or the terminal snapshot's.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        after: int | None = None,
        on_retry: Callable[[str, float], None] | None = None,
        backoff: Backoff | None = None,
    ):
        self.url = url
        self.token = token
        self.on_retry = on_retry or (lambda reason, delay: None)
        self.backoff = backoff or Backoff()
        self.last_seq: int | None = after  # None until the first snapshot or event
        self.job: JobDocument | None = None
        self.final: StateEvent | None = None

    def stream_url(self) -> str:
        """The URL of the next connection: with `after` once any seq has been seen."""
        return self.url if self.last_seq is None else f"{self.url}?after={self.last_seq}"

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            try:
                headers = {"Authorization": f"Bearer {self.token}"}
                async with websockets.connect(
                    self.stream_url(), additional_headers=headers, max_size=2**24, close_timeout=2
                ) as ws:
                    async for raw in ws:
                        message = self._accept(raw)
                        if message is not None:
                            yield message
                        if self.final is not None:
                            return
                    # The iterator ends only on a clean close (1000/1001).
                    reason = self._closed(ws.close_code, "")
            except ConnectionClosed as exc:
                reason = self._closed(exc.rcvd.code if exc.rcvd is not None else 1006,
                                      exc.rcvd.reason if exc.rcvd is not None else "")
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (408, 429):
                    raise WatchError(f"the server refused the WebSocket handshake: HTTP {status}", status=status) from None
                reason = f"HTTP {status} on the WebSocket handshake"
            except InvalidURI as exc:
                raise WatchError(f"bad server URL: {exc}") from None
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            delay = self.backoff.next_delay()
            if delay is None:
                raise WatchError(
                    f"gave up after {self.backoff.give_up_after:.0f} s of failed connections (last: {reason})",
                    gave_up=True,
                )
            self.on_retry(reason, delay)
            await asyncio.sleep(delay)

    def _closed(self, code: int | None, reason: str) -> str:
        """Why a connection ended, when it ended without the job's end; raises when retrying cannot help."""
        if code in FATAL_CLOSES:
            raise WatchError(FATAL_CLOSES[code], close_code=code)
        # Anything else (1000 before the terminal event included: a server going away) resumes.
        return f"{CLOSE_REASONS.get(code, 'connection closed')} ({code}{': ' + reason if reason else ''})"

    def _accept(self, raw: str | bytes) -> Message | None:
        """The message to hand out, or None for a duplicate, a stale snapshot or something not ours."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None  # the contract only sends JSON
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "snapshot":
            snapshot = SnapshotMessage.model_validate(data)
            if self.last_seq is not None and not snapshot.reset and snapshot.job.seq <= self.last_seq:
                return None  # only a first or a reset snapshot is news; a stale one would rewind
            self.job, self.last_seq = snapshot.job, snapshot.job.seq
            self.backoff.reset()
            if _ended(snapshot.job.state):
                job = snapshot.job
                finished = datetime.fromisoformat(job.finished_at.replace("Z", "+00:00")).timestamp() if job.finished_at else 0.0
                self.final = StateEvent(job_id=job.id, seq=job.seq, ts=finished, state=job.state,
                                        result=job.result, error=job.error)
            return snapshot
        if kind not in ("progress", "log", "state"):
            return None  # an `error` frame answers a client message, which this client never sends
        try:
            event = parse_event(raw)
        except ValidationError:
            return None
        if self.last_seq is not None and event.seq <= self.last_seq:
            return None  # a duplicate from the replay after a reconnect
        self.last_seq = event.seq
        self.backoff.reset()
        if self.job is not None:
            self.job = self.job.apply(event)
        if isinstance(event, StateEvent) and event.terminal:
            self.final = event
        return event
