"""jobcast.client's resuming watch against a small local WebSocket server that drops connections
on purpose: resume with `after`, de-duplication by seq, reset snapshots, fatal close codes, backoff.
(Moved here with the code from tests/e2e/test_cli.py when the follower became jobcast.client.)"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from websockets.asyncio.server import serve

from jobcast.cli.stack import free_port
from jobcast.client import Backoff, Client, JobWatch, WatchError, ws_url_for
from jobcast.events.schema import JobDocument, LogEvent, ProgressEvent, SnapshotMessage, StateEvent

JOB_ID = "7b0f3c8e-0000-4000-8000-000000000001"


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def event(seq: int, **fields) -> str:
    base = {"type": "progress", "job_id": JOB_ID, "seq": seq, "ts": 1.0, "current": seq, "total": 20,
            "percent": seq * 5.0, "message": f"step {seq}"}
    return json.dumps({**base, **fields})


def log(seq: int) -> str:
    return json.dumps({"type": "log", "job_id": JOB_ID, "seq": seq, "ts": 1.0, "message": f"line {seq}"})


def document(seq: int, state: str = "running") -> dict:
    return {"id": JOB_ID, "kind": "demo.count", "params": {"steps": 20}, "state": state, "seq": seq,
            "result": {"counted": 20} if state == "succeeded" else None, "error": None, "attempts": 1,
            "progress": {"current": seq, "total": 20, "percent": seq * 5.0, "message": None},
            "created_at": "2025-06-12T09:29:41.871904Z", "started_at": "2025-06-12T09:29:41.903117Z",
            "finished_at": "2025-06-12T09:29:44.511093Z" if state == "succeeded" else None}


def snapshot(seq: int, reset: bool = False, state: str = "running") -> str:
    return json.dumps({"type": "snapshot", "job": document(seq, state), "reset": reset})


def terminal(seq: int) -> str:
    return json.dumps({"type": "state", "job_id": JOB_ID, "seq": seq, "ts": 1749720584.511093, "state": "succeeded",
                       "result": {"counted": 20}, "error": None})


class FlakyServer:
    """Serves a scripted list of connections; records each request's path and headers."""

    def __init__(self, script):
        self.script = list(script)
        self.paths: list[str] = []
        self.auth: list[str] = []

    async def handler(self, ws):
        self.paths.append(ws.request.path)
        self.auth.append(ws.request.headers.get("Authorization", ""))
        await self.script.pop(0)(ws)


async def drop_after(ws, frames):
    for frame in frames:
        await ws.send(frame)
    await asyncio.sleep(0.05)  # let the frames leave before the socket dies
    ws.transport.abort()  # no close frame: the client sees 1006


async def close_after(ws, frames, code):
    for frame in frames:
        await ws.send(frame)
    await ws.close(code)


def resume_script():
    return [
        # 1: snapshot at seq 3, events 4..9 (7 is a log line), then the connection dies.
        lambda ws: drop_after(ws, [snapshot(3), *(log(s) if s == 7 else event(s) for s in range(4, 10))]),
        # 2: replays 8..12 (8 and 9 are duplicates to ignore), then "server restarting".
        lambda ws: close_after(ws, [event(s) for s in range(8, 13)], 1012),
        # 3: "too slow": the client must come back with after=12.
        lambda ws: close_after(ws, [], 4408),
        # 4: history was trimmed: a reset snapshot at 15, then 16..19 and the terminal event.
        lambda ws: close_after(ws, [snapshot(15, reset=True), *(event(s) for s in range(16, 20)), terminal(20)], 1000),
    ]


EXPECTED_PATHS = [f"/ws/jobs/{JOB_ID}/", f"/ws/jobs/{JOB_ID}/?after=9", f"/ws/jobs/{JOB_ID}/?after=12",
                  f"/ws/jobs/{JOB_ID}/?after=12"]


def fast() -> Backoff:
    return Backoff(initial=0.05, cap=0.2, give_up_after=30)


async def collect(watch: JobWatch, timeout: float = 30) -> list:
    async def run():
        return [message async for message in watch]

    return await asyncio.wait_for(run(), timeout)


async def test_watch_resumes_after_drops_without_gaps_or_duplicates():
    server = FlakyServer(resume_script())
    retries = []
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        with Client(f"http://127.0.0.1:{port}", "tok") as client:
            watch = client.watch(JOB_ID, on_retry=lambda reason, delay: retries.append(reason), backoff=fast())
            received = await collect(watch)
    assert server.paths == EXPECTED_PATHS
    assert server.auth == ["Bearer tok"] * 4
    # Typed messages: the wire format's own models.
    assert isinstance(received[0], SnapshotMessage) and isinstance(received[-1], StateEvent)
    assert [type(m) for m in received[1:7]] == [ProgressEvent] * 3 + [LogEvent] + [ProgressEvent] * 2
    assert [m.seq for m in received if m.type != "snapshot"] == [*range(4, 13), *range(16, 21)]
    assert [m.reset for m in received if m.type == "snapshot"] == [False, True]
    assert watch.final == received[-1] and watch.final.state == "succeeded" and watch.final.result == {"counted": 20}
    # The document the watch keeps is the reset snapshot's with every later event folded in.
    assert isinstance(watch.job, JobDocument)
    assert (watch.job.seq, watch.job.state, watch.job.progress.current) == (20, "succeeded", 19)
    assert len(retries) == 3 and "1006" in retries[0] and "1012" in retries[1] and "4408" in retries[2]


async def test_watch_with_after_sends_it_on_the_first_connection_and_stops_on_a_terminal_snapshot():
    server = FlakyServer([lambda ws: close_after(ws, [snapshot(20, reset=True, state="succeeded")], 1000)])
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        watch = JobWatch(ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok", after=99, backoff=fast())
        received = await collect(watch)
    assert server.paths == [f"/ws/jobs/{JOB_ID}/?after=99"]
    assert len(received) == 1 and watch.final.state == "succeeded" and watch.final.seq == 20


async def test_watch_command_resumes_against_a_flaky_server(tmp_path):
    server = FlakyServer(resume_script())
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
        env.update(JOBCAST_URL=f"http://127.0.0.1:{port}", JOBCAST_TOKEN="tok",
                   JOBCAST_CONFIG=str(tmp_path / "client.json"))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobcast.cli.main", "watch", JOB_ID, "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    messages = json_lines(out.decode())
    assert server.paths == EXPECTED_PATHS
    seqs = [m["job"]["seq"] if m["type"] == "snapshot" else m["seq"] for m in messages]
    assert seqs == [3, *range(4, 13), 15, *range(16, 21)]  # the reset snapshot jumps to 15
    assert len(seqs) == len(set(seqs))
    stderr = err.decode()
    assert stderr.count("reconnecting in") == 3 and f"job {JOB_ID} succeeded" in stderr


@pytest.mark.parametrize("code, words", [(4404, "not found"), (4401, "not authenticated"), (4403, "staff")])
async def test_watch_fatal_close_codes(code, words):
    server = FlakyServer([lambda ws: close_after(ws, [], code)])
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        watch = JobWatch(ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok")
        with pytest.raises(WatchError) as caught:
            await collect(watch, 10)
    assert caught.value.close_code == code and not caught.value.gave_up and words in caught.value.reason
    assert len(server.paths) == 1  # no retry


async def test_an_error_in_the_callers_loop_is_not_retried():
    """A broken stdout (`watch | head`) is not a network problem: it ends the watch at once."""
    server = FlakyServer(resume_script())
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        watch = JobWatch(ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok")
        with pytest.raises(BrokenPipeError):
            async for _ in watch:
                raise BrokenPipeError(32, "Broken pipe")
    assert len(server.paths) == 1


async def test_watch_gives_up_after_its_deadline():
    retries = []
    watch = JobWatch(
        ws_url_for(f"http://127.0.0.1:{free_port()}", JOB_ID), "tok",
        on_retry=lambda reason, delay: retries.append(delay),
        backoff=Backoff(initial=0.05, cap=0.4, give_up_after=1.0),
    )
    with pytest.raises(WatchError) as caught:
        await collect(watch)
    assert caught.value.gave_up and "gave up" in caught.value.reason
    assert retries and all(0 < d <= 0.4 for d in retries)
    assert retries[0] <= 0.05


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(initial=0.5, cap=10, give_up_after=1e9)
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings)), delays
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_ws_url_is_derived_from_the_http_url():
    assert ws_url_for("http://h:8000", "x") == "ws://h:8000/ws/jobs/x/"
    assert ws_url_for("https://h/base/", "x") == "wss://h/base/ws/jobs/x/"
    with pytest.raises(ValueError):
        ws_url_for("ftp://h", "x")
