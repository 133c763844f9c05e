"""Follow one job's event stream over WebSocket, resuming with `?after=<last seq>` after any drop.

`JobFollower` knows nothing about terminals: it hands every new message to a callback,
so `jobcast watch` draws a bar with it and the tests drive it against a fake server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from jobcast.events.schema import CloseCode
from jobcast.jobs.states import is_terminal

# Close codes after which reconnecting cannot help (docs/protocol.md).
FATAL_CLOSES = {
    CloseCode.NOT_AUTHENTICATED: "not authenticated: the token was refused (create one with `jobcast token <username> --save`)",
    CloseCode.NOT_FOUND: "not found: no such job (or it is not yours)",
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


def _ended(state) -> bool:
    """Whether a state read off the wire is a terminal one (an unknown one is not)."""
    try:
        return is_terminal(state)
    except ValueError:
        return False


class FollowError(Exception):
    """Following stopped for good: `message` for the user, `exit_code` for the shell."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def ws_url_for(http_url: str, job_id: str) -> str:
    """The job's stream URL derived from the server's HTTP URL (http→ws, https→wss)."""
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"server URL must start with http:// or https://, not {http_url!r}")
    return urlunsplit((scheme, parts.netloc, f"{parts.path.rstrip('/')}/ws/jobs/{job_id}/", "", ""))


class _HandlerFailed(Exception):
    """The caller's callback raised: its error, not the network's, so never retried."""


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


class JobFollower:
    """Reads one job's stream until its terminal state, reconnecting and de-duplicating by seq."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_message: Callable[[dict], None],
        on_retry: Callable[[str, float], None] | None = None,
        backoff: Backoff | None = None,
    ):
        self.url = url
        self.token = token
        self.on_message = on_message
        self.on_retry = on_retry or (lambda reason, delay: None)
        self.backoff = backoff or Backoff()
        self.last_seq: int | None = None  # None until the first snapshot or event
        self.final: dict | None = None  # the terminal state event (or terminal snapshot)

    def stream_url(self) -> str:
        """The URL of the next connection: with `after` once any seq has been seen."""
        return self.url if self.last_seq is None else f"{self.url}?after={self.last_seq}"

    async def run(self) -> dict:
        """Follow until the job ends; returns its terminal state (keys state, result, error)."""
        while True:
            try:
                reason = await self._connect_once()
            except _HandlerFailed as exc:
                raise exc.__cause__ from None
            except ConnectionClosed as exc:
                reason = self._closed(exc)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status not in (408, 429):
                    raise FollowError(f"the server refused the WebSocket handshake: HTTP {status}", 2) from None
                reason = f"HTTP {status} on the WebSocket handshake"
            except InvalidURI as exc:
                raise FollowError(f"bad server URL: {exc}", 2) from None
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self.final is not None:
                return self.final
            delay = self.backoff.next_delay()
            if delay is None:
                raise FollowError(
                    f"gave up after {self.backoff.give_up_after:.0f} s of failed connections (last: {reason})", 1
                )
            self.on_retry(reason, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str:
        """One connection; returns why it ended when it ended without the job's end."""
        headers = {"Authorization": f"Bearer {self.token}"}
        connect = websockets.connect(
            self.stream_url(), additional_headers=headers, max_size=2**24, close_timeout=2
        )
        async with connect as ws:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue  # not ours to show; the contract only sends JSON
                try:
                    self._handle(message)
                except Exception as exc:
                    raise _HandlerFailed() from exc
                if self.final is not None:
                    return "finished"
            # The iterator ends only on a clean close (1000/1001).
            return self._closed_cleanly(ws.close_code)

    def _closed_cleanly(self, code: int | None) -> str:
        if code in FATAL_CLOSES:
            raise FollowError(FATAL_CLOSES[code], 2)
        # 1000 before the terminal event (a server going away): resume from history.
        return f"connection closed ({code})"

    def _closed(self, exc: ConnectionClosed) -> str:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        if code in FATAL_CLOSES:
            raise FollowError(FATAL_CLOSES[code], 2)
        reason = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else ""
        return f"{CLOSE_REASONS.get(code, 'connection closed')} ({code}{': ' + reason if reason else ''})"

    def _handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            job = message.get("job") or {}
            if self.last_seq is not None and not message.get("reset") and job.get("seq", 0) <= self.last_seq:
                return  # only a first or a reset snapshot is news; a stale one would rewind the bar
            self.last_seq = max(self.last_seq or 0, int(job.get("seq", 0)))
            self.backoff.reset()
            self.on_message(message)
            if _ended(job.get("state")):
                self.final = {"state": job["state"], "result": job.get("result"), "error": job.get("error")}
            return
        seq = message.get("seq")
        if isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return  # a duplicate from the replay after a reconnect
            self.last_seq = seq
            self.backoff.reset()
        self.on_message(message)
        if kind == "state" and _ended(message.get("state")):
            self.final = {"state": message["state"], "result": message.get("result"), "error": message.get("error")}
