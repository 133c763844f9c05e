"""The ws tier's uvicorn protocol (jobcast.ws.protocol) on a real uvicorn server and socket."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
import websockets

from jobcast.cli.stack import free_port
from jobcast.ws.protocol import QUIET_SECONDS, STALLED_DROP_SECONDS, JobcastWebSocketProtocol
from tests.support import read_to_the_end, stalled_client


class Server:
    """An in-process uvicorn with jobcast's protocol and the ws tier's frame limit."""

    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, ws=JobcastWebSocketProtocol,
                                ws_max_size=65536, ws_per_message_deflate=False, lifespan="off",
                                log_level="critical", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)

    async def __aenter__(self):
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self):
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 10)

    async def __aexit__(self, *exc):
        if not self.task.done():
            await self.stop()


async def accepting_app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hello"})
        elif message["type"] == "websocket.disconnect":
            return


async def test_an_oversized_frame_gets_the_1009_close():
    async with Server(accepting_app) as server:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as ws:
            assert await ws.recv() == "hello"
            await ws.send("x" * (64 * 1024 + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_after_an_oversized_frame_the_server_waits_for_the_client_to_stop_sending_before_its_end_of_stream():
    """Behind nginx an end-of-stream while the client still sends gets the client reset, close frame
    and all: the server half-closes only once the rest of the frame has stopped arriving."""
    async with Server(accepting_app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
        assert await asyncio.wait_for(reader.readexactly(7), 5) == b"\x81\x05hello"
        # A masked text frame declaring 8 MiB: refused on its header, its payload still to come.
        writer.write(b"\x81\xff" + (8 * 1024 * 1024).to_bytes(8, "big") + b"mask")
        opcode, length = await asyncio.wait_for(reader.readexactly(2), 5)
        close = await asyncio.wait_for(reader.readexactly(length), 5)
        assert opcode == 0x88 and int.from_bytes(close[:2], "big") == 1009
        for _ in range(10):  # the client goes on sending for 5 quiet periods: no end-of-stream meanwhile
            writer.write(b"\x00" * 65536)
            await writer.drain()
            await asyncio.sleep(QUIET_SECONDS / 2)
            assert not reader.at_eof()
        assert await asyncio.wait_for(reader.read(1024), 5) == b""  # then it comes
        writer.close()


async def test_a_handshake_caught_by_shutdown_gets_503_with_retry_after():
    handshake_started = asyncio.Event()

    async def slow_app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        handshake_started.set()
        await asyncio.sleep(30)  # still checking the client when the server stops

    async with Server(slow_app) as server:
        client = asyncio.ensure_future(websockets.connect(f"ws://127.0.0.1:{server.port}/"))
        await asyncio.wait_for(handshake_started.wait(), 5)
        await server.stop()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await asyncio.wait_for(client, 5)
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "1"


async def test_a_reader_that_stopped_reading_is_closed_with_4408_not_waited_for_forever(settings):
    """A send to a client whose buffers are full waits at most JOBCAST_WS_SEND_TIMEOUT; then 4408, then the drop."""
    settings.JOBCAST = {**settings.JOBCAST, "WS_SEND_TIMEOUT": 1.0}
    outcome = {}

    async def flooding_app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        started = loop.time()
        try:
            while True:
                await send({"type": "websocket.send", "text": "x" * 1000})
        except OSError:  # uvicorn's ClientDisconnected
            outcome["gave_up_after"] = loop.time() - started
        outcome["disconnect"] = await receive()

    loop = asyncio.get_running_loop()
    async with Server(flooding_app) as server:
        reader, writer = await stalled_client(server.port, "/")
        await wait_for_key(outcome, "disconnect", 30)
        # The first frames fill the buffers quickly; after that, the wait is the send timeout.
        assert 1.0 <= outcome["gave_up_after"] < 15, outcome
        assert outcome["disconnect"]["code"] == 4408
        # Without the client reading a byte, the server dropped the connection (its close frame
        # could not be written); a client that reads again gets its backlog, then the end.
        await asyncio.sleep(STALLED_DROP_SECONDS + 0.5)
        assert not server.server.server_state.connections
        data = await read_to_the_end(reader)
        writer.close()
    assert data.startswith(b"\x81")  # the frames it did not read


async def wait_for_key(mapping: dict, key: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while key not in mapping:
        assert asyncio.get_running_loop().time() < deadline, f"no {key} within {timeout} s"
        await asyncio.sleep(0.05)
