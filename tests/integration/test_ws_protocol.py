"""The ws tier's uvicorn protocol (jobcast.ws.protocol) on a real uvicorn server and socket."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
import websockets

from jobcast.cli.stack import free_port
from jobcast.ws.protocol import JobcastWebSocketProtocol


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
