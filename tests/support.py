"""Helpers the fixtures share: real servers on free ports, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jobcast.cli.stack import find_redis_server, free_port, port_open

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        """Stop this server (by its pid) and wait for it."""
        stop_process(self.process)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """A real redis-server on a free port (or `port`, to restart one), keeping nothing on disk."""
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError("redis-server is needed for the tests: apt-get install redis-server (make test does this as root)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(port), 10, f"redis-server on port {port}")
    return RedisServer(f"redis://127.0.0.1:{port}/0", port, process)


def load_script(name: str):
    """A script of scripts/ (a Python file without .py) as a module, to test its functions."""
    import importlib.util
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader(f"{name}_script", str(REPO / "scripts" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal a process we started (by pid) and wait; kill it if it does not stop."""
    if process.poll() is None:
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TcpProxy:
    """A TCP proxy on 127.0.0.1 to `target_port` that a test can cut and restore.

    `cut()` drops every connection through it and stops listening, so the server behind it
    is unreachable (connections refused) until `restore()` listens again on the same port.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        """Listen (again) and forward every new connection to the target."""
        if self._listener is not None:
            return
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True).start()

    def cut(self) -> None:
        """Stop listening and drop every open connection, both ways."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._open:
                _drop(sock)
            self._open.clear()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _drop(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _drop(client), _drop(upstream)
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            for sock in (source, sink):
                if sock in self._open:
                    self._open.discard(sock)
                    _drop(sock)


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def publish(events, owner_id, seq_floor: int = 0):
    """Publish events of one job through a fresh publish handle, as a lifecycle service would."""
    from jobcast.events.publisher import JobPublisher

    events = events if isinstance(events, list) else [events]
    return JobPublisher(events[0].job_id, owner_id, seq=seq_floor).publish(events)


async def stream_to_the_end(url: str, headers: dict | None = None) -> tuple[list[dict], int | None]:
    """Every message of one WebSocket connection (JSON), and the code it was closed with."""
    import orjson
    import websockets

    messages = []
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        try:
            async for raw in ws:
                messages.append(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass
    return messages, ws.close_code


async def stalled_client(port: int, path: str, headers: dict | None = None):
    """A WebSocket client that does the handshake and then never reads (its small receive buffer
    fills fast, then the server's); returns its asyncio (reader, writer)."""
    import asyncio
    import base64
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert response.startswith(b"HTTP/1.1 101"), response
    reader._transport.pause_reading()  # from here on nothing is read
    return reader, writer


async def read_to_the_end(reader, timeout: float = 10) -> bytes:
    """Everything a stalled client's connection still holds until it ends (EOF or reset); TimeoutError
    when it does not end within `timeout` seconds."""
    import asyncio

    reader._transport.resume_reading()
    chunks = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(2**16):
                chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def rss_kib(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")
