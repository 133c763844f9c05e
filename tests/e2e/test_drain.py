"""Graceful drain of the ws tier through nginx: SIGTERM a ws process while 50 watchers follow
running jobs; every watcher resumes with after=<last seq> and loses and repeats nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import websockets

from jobcast.client import Backoff
from jobcast.cli.stack import free_port, port_open
from tests.e2e.conftest import start_stack
from tests.support import stop_process, wait_until

pytestmark = [pytest.mark.e2e]

WATCHERS = 50
JOBS = 10
DRAIN_SECONDS = 2.0
GRACE_SECONDS = 3.0
# Every job runs at once (they mostly sleep), so the drain happens while all are live.
COMMON_ENV = {"JOBCAST_WORKER_CONCURRENCY": str(JOBS), "JOBCAST_WS_DRAIN_SECONDS": str(DRAIN_SECONDS),
              "JOBCAST_WS_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
              "JOBCAST_WS_MAX_CONNECTIONS_PER_USER": "500"}
REPO = Path(__file__).resolve().parents[2]


class Watcher:
    """A client as the contract wants one: resume with after=last seq, backoff with jitter."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.seqs: list[int] = []  # every event seq received, duplicates included
        self.closes: list[int] = []
        self.closed_1012_at: list[float] = []  # time.monotonic() of each 1012 close
        self.final: str | None = None
        self.started = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff(initial=0.2, cap=2.0, give_up_after=60)
        while self.final is None:
            url = f"{self.url}?after={self.seqs[-1]}" if self.seqs else self.url
            try:
                async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
                    async for raw in ws:
                        message = orjson.loads(raw)
                        if message["type"] == "snapshot":
                            assert not self.seqs or message["reset"] is False
                            if not self.seqs:
                                self.seqs.append(message["job"]["seq"])
                            continue
                        self.seqs.append(message["seq"])
                        self.started.set()
                        backoff.reset()
                        if message["type"] == "state" and message["state"] in ("succeeded", "failed", "cancelled"):
                            self.final = message["state"]
                    self.closed(ws.close_code)
            except websockets.ConnectionClosed as exc:
                self.closed(exc.rcvd.code if exc.rcvd else 1006)
            except websockets.InvalidStatus as exc:
                # 502 from nginx while the only ws process restarts; 503 from a stopping ws process
                # whose shutdown caught this handshake mid-way (jobcast.ws.protocol)
                assert exc.response.status_code in (502, 503)
                self.closes.append(exc.response.status_code)
            except OSError:
                self.closes.append(-1)
            if self.final is None:
                delay = backoff.next_delay()
                assert delay is not None, "gave up reconnecting"
                await asyncio.sleep(delay)

    def closed(self, code: int) -> None:
        self.closes.append(code)
        if code == 1012:
            self.closed_1012_at.append(time.monotonic())


def exited(pid: int) -> bool:
    """Whether process `pid` is gone (or a zombie its parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def watch_exit(pid: int, since: float) -> list[float]:
    """Seconds from `since` until `pid` exits, appended (by a polling thread) when it does."""
    took: list[float] = []

    def poll():
        deadline = since + 120
        while time.monotonic() < deadline:
            if exited(pid):
                took.append(time.monotonic() - since)
                return
            time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()
    return took


def bursts(times: list[float], gap: float = 0.1) -> list[int]:
    """Sizes of the bursts in `times`: times less than `gap` seconds apart are one burst."""
    sizes: list[int] = []
    times = sorted(times)
    for k, at in enumerate(times):
        if k and at - times[k - 1] < gap:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


async def follow_all(stack, jobs, kill) -> list[Watcher]:
    token = stack.token("drain")
    watchers = [Watcher(f"{stack.ws_url}/ws/jobs/{jobs[i % len(jobs)]}/", token) for i in range(WATCHERS)]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    await asyncio.wait_for(asyncio.gather(*(w.started.wait() for w in watchers)), 60)
    kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return watchers


def submit_jobs(stack) -> list[str]:
    with stack.client("drain") as client:
        return [
            client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 150, "interval_ms": 40}}).json()["id"]
            for _ in range(JOBS)
        ]


def assert_nothing_lost_or_repeated(watchers: list[Watcher]) -> None:
    for watcher in watchers:
        assert watcher.final == "succeeded"
        first = watcher.seqs[0]
        assert watcher.seqs == list(range(first, first + len(watcher.seqs))), "a gap or a duplicate"


@pytest.fixture
def two_ws_stack(tmp_path):
    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="nginx", JOBCAST_WS_INSTANCES="2", **COMMON_ENV)
    yield stack
    stop()


def test_sigterm_to_one_of_two_ws_processes_loses_and_repeats_nothing(two_ws_stack):
    stack = two_ws_stack
    port = int(stack.env["JOBCAST_WS_PORT"])
    victims = stack.pids(f"jobcast.ws.server --host 127.0.0.1 --port {port}")
    assert len(victims) == 1, (port, stack.pids("jobcast"))
    victim = victims[0]
    jobs = submit_jobs(stack)

    drained_at: list[float] = []
    exit_after: list[float] = []

    def kill():
        drained_at.append(time.monotonic())
        os.kill(victim, signal.SIGTERM)
        exit_after[:] = [watch_exit(victim, drained_at[0])]

    watchers = asyncio.run(follow_all(stack, jobs, kill))
    assert_nothing_lost_or_repeated(watchers)
    drained = [w for w in watchers if 1012 in w.closes]
    assert len(drained) >= 5, "too few watchers were on the drained process to see the batches"
    assert all(code in (1000, 1012) for w in watchers for code in w.closes), (
        "only drain closes, no errors", [w.closes for w in watchers if set(w.closes) - {1000, 1012}])
    # The drain's 1012 closes (each drained watcher's first; later ones are reconnects the
    # draining process refused) are spread over the drain window in batches, not all at once.
    closes = sorted(w.closed_1012_at[0] - drained_at[0] for w in drained)
    assert closes[0] >= 0 and closes[-1] <= DRAIN_SECONDS + 1.0, closes
    assert closes[-1] - closes[0] >= DRAIN_SECONDS / 2, f"closes not spread over the window: {closes}"
    sizes = bursts(closes)
    assert len(sizes) >= 4 and max(sizes) <= len(closes) / 2, (sizes, closes)
    # The process exited after its drain, within drain + grace (and the supervisor started a new one).
    wait_until(lambda: exit_after[0], 30, "the drained process to exit")
    took = exit_after[0][0]
    assert closes[-1] - 0.5 <= took <= DRAIN_SECONDS + GRACE_SECONDS + 1.0, (took, closes)


def test_restarting_the_only_ws_process_clients_wait_and_resume(tmp_path):
    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="nginx", **COMMON_ENV)
    try:
        (only,) = stack.pids("jobcast.ws.server")
        jobs = submit_jobs(stack)
        watchers = asyncio.run(follow_all(stack, jobs, lambda: os.kill(only, signal.SIGTERM)))
        assert_nothing_lost_or_repeated(watchers)
        assert all(1012 in w.closes for w in watchers), [w.closes for w in watchers]
        assert only not in stack.pids("jobcast.ws.server") and stack.pids("jobcast.ws.server")
    finally:
        stop()


def test_sigterm_to_the_web_tier_finishes_the_request_in_flight(tmp_path):
    """gunicorn's graceful stop: a request whose body is still arriving gets its answer."""
    import json
    import socket

    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="uvicorn")
    try:
        token = stack.token("web-drain")
        (master,) = [pid for pid in stack.pids("gunicorn") if pid in _children_of(stack.process.pid)]
        body = json.dumps({"kind": "demo.count", "params": {"steps": 1}}).encode()
        head = (
            f"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", stack.web_port), timeout=20) as conn:
            conn.sendall(head + body[:10])
            time.sleep(0.5)  # the request is now in flight in a gunicorn worker
            os.kill(master, signal.SIGTERM)
            time.sleep(0.5)
            conn.sendall(body[10:])
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 201"), response[:200]
        wait_until(lambda: master not in stack.pids("gunicorn"), 30, "gunicorn to exit")
    finally:
        stop()


def _children_of(pid: int) -> set[int]:
    import subprocess

    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout.split()[2:]
    return {int(child) for child, parent in zip(out[0::2], out[1::2]) if int(parent) == pid}


def test_the_shutdown_grace_bounds_a_connection_that_never_finishes(tmp_path):
    """After the drain, uvicorn gives what is still open JOBCAST_WS_SHUTDOWN_GRACE_SECONDS, then cancels it."""
    port, grace = free_port(), 1.5
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
    env.update(JOBCAST_WS_DRAIN_SECONDS="0.5", JOBCAST_WS_SHUTDOWN_GRACE_SECONDS=str(grace), PYTHONUNBUFFERED="1")
    log = tmp_path / "ws.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobcast.ws.server", "--app", "tests.e2e.stuck_app:app",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, 30, "the ws server to listen")
        assert process.poll() is None, log.read_text()
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /stuck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_until(lambda: b"stuck request started" in log.read_bytes(), 10, "the request to start")
            started = time.monotonic()
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            took = time.monotonic() - started
        assert grace <= took <= 0.5 + grace + 1.5, (took, log.read_text())
        assert b"timeout graceful shutdown exceeded" in log.read_bytes(), log.read_text()
    finally:
        stop_process(process)
