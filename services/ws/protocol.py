"""uvicorn's sans-I/O websockets protocol, with a close that survives an oversized frame
and a 503 (not 500) for a handshake caught by the server's shutdown.

jobcast serves WebSockets with uvicorn's `websockets-sansio` implementation: no helper
tasks per socket and a cheaper send path than the legacy one (docs/benchmarks.md). On a
frame over the size limit, uvicorn 0.54 writes the 1009 close frame and closes the TCP
connection at once; the rest of the oversized frame is still arriving, so the kernel
answers it with a reset, which can destroy the close frame before the client (or nginx)
reads it — the client then sees 1006 instead of the contract's 1009. Here the server
keeps reading (and discarding) after the close frame, and half-closes only once the client
has stopped sending for QUIET_SECONDS (or uvicorn's close timeout passes). Half-closing at
once is not enough behind nginx: on the ws tier's end-of-stream nginx closes the client's
connection, and with megabytes of the frame still unread there the kernel resets it, close
frame and all (tests/e2e/test_hostile_input.py sends 8 MiB through nginx).

A handshake still in progress when the process stops (after the drain, before the port
closes) gets uvicorn's HTTP 500; here it gets 503 with Retry-After, which is what it is: the
server is restarting, try again (docs/deploy.md, drains).

A client that stops reading (its TCP window full) cannot hold a consumer forever: uvicorn's
send waits, without limit, for the transport's buffer to drain below its high-water mark.
Here that wait lasts at most JOBCAST_WS_SEND_TIMEOUT; then the socket is closed with 4408
("too slow a reader", docs/protocol.md) and dropped a moment later if even that close frame
cannot be written. The same drop follows a keep-alive timeout, and a close whose reply does
not come within uvicorn's close timeout, when the close frame is stuck behind a full buffer
(asyncio's close() alone would wait for it to drain forever).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from jobcast.conf import option
from jobcast.events.schema import CloseCode

RETRY_AFTER_SECONDS = "1"
QUIET_SECONDS = 0.2  # after a failed frame: no bytes from the client for this long, then end-of-stream
# After a close that is stuck behind a full buffer, how long the client still gets to read
# up to the close frame before the connection is dropped.
STALLED_DROP_SECONDS = 2.0


class WritableWithin(asyncio.Event):
    """uvicorn's "the transport takes writes" flag, whose wait lasts at most JOBCAST_WS_SEND_TIMEOUT:
    then the socket is closed as stalled, and uvicorn's send raises ClientDisconnected."""

    def __init__(self, protocol: "JobcastWebSocketProtocol"):
        super().__init__()
        self.protocol = protocol

    async def wait(self) -> bool:
        if self.is_set():
            return True
        try:
            await asyncio.wait_for(super().wait(), self.protocol.send_timeout)
        except TimeoutError:
            self.protocol.close_stalled()
        return True


class JobcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol: failed connections wait for the peer; shutdown refuses handshakes with 503;
    a reader that stopped reading is closed with 4408 (or dropped)."""

    refused_for_shutdown = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.send_timeout = option("WS_SEND_TIMEOUT")
        self.writable = WritableWithin(self)  # what uvicorn's send waits on before each write
        self.writable.set()

    def send(self, message):
        """uvicorn's send (a coroutine, returned as is: no extra frame per event); a close also
        gets a timer that drops the connection when its frame cannot get out."""
        if message["type"] == "websocket.close":
            return self.send_close(message)
        return super().send(message)

    async def send_close(self, message) -> None:
        await super().send(message)
        if self.close_timer is not None:
            # uvicorn's close timer only calls close(), which waits for the buffer to drain.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.drop_if_stuck)

    def close_stalled(self) -> None:
        """Close a socket whose reader stopped reading: 4408, then drop it if the frame cannot get out."""
        if not self.close_sent and self.conn.state is State.OPEN:
            self.conn.send_close(CloseCode.TOO_SLOW, "reader too slow")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": CloseCode.TOO_SLOW, "reason": ""})
        self.stop_keepalive()
        self.disconnected = True
        self.writable.set()  # other sends waiting on this socket give up too (ClientDisconnected)
        self.drop_if_stuck()

    def drop_if_stuck(self) -> None:
        """Close the transport; abort it if its buffer has not drained within STALLED_DROP_SECONDS."""
        self.transport.close()
        self.loop.call_later(STALLED_DROP_SECONDS, self.transport.abort)

    def keepalive_timeout(self) -> None:
        closing = self.close_sent or self.transport.is_closing()
        super().keepalive_timeout()
        if not closing:  # uvicorn wrote its 1011 and closed: that close waits for the buffer to drain
            self.drop_if_stuck()

    def shutdown(self) -> None:
        if self.handshake_complete or self.close_sent or self.initial_response is not None:
            return super().shutdown()
        self.stop_keepalive()
        response = self.conn.reject(HTTPStatus.SERVICE_UNAVAILABLE, "Server restarting: connect again.\n")
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.refused_for_shutdown = True
        self.transport.close()

    def send_500_response(self) -> None:
        if not self.refused_for_shutdown:  # the app's own failure later must not write after the 503
            super().send_500_response()

    last_discarded = 0.0  # when the client last sent bytes after the failed frame (loop time)

    def handle_parser_exception(self) -> None:
        if self.close_sent:
            # Already closing: what the client still sends is discarded by the parser, and
            # puts the half-close off (half_close_when_quiet).
            self.last_discarded = self.loop.time()
            return
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.last_discarded = self.loop.time()
        self.loop.call_later(QUIET_SECONDS, self.half_close_when_quiet)
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def half_close_when_quiet(self) -> None:
        """End-of-stream once the client has sent nothing for QUIET_SECONDS: it has the close frame
        and nothing of its own left unread, so closing cannot reset the connection."""
        if self.transport.is_closing():
            return
        quiet_for = self.loop.time() - self.last_discarded
        if quiet_for < QUIET_SECONDS:
            self.loop.call_later(QUIET_SECONDS - quiet_for, self.half_close_when_quiet)
        elif self.transport.can_write_eof():
            self.transport.write_eof()
