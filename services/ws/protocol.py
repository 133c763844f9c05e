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
"""

from __future__ import annotations

from http import HTTPStatus

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

RETRY_AFTER_SECONDS = "1"
QUIET_SECONDS = 0.2  # after a failed frame: no bytes from the client for this long, then end-of-stream


class JobcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol: failed connections wait for the peer; shutdown refuses handshakes with 503."""

    refused_for_shutdown = False

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
