"""`jobcast submit` and `jobcast watch` against the real stack, and the follower's resume logic
against a small local WebSocket server that drops connections on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from websockets.asyncio.server import serve

from jobcast.cli.follow import Backoff, FollowError, JobFollower, ws_url_for
from jobcast.cli.stack import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

USER = "e2e-cli"


@pytest.fixture(scope="module")
def cli(live_stack):
    """The live stack with a token saved in its client config file, as a user would do."""
    done = live_stack.jobcast("token", USER, "--create-user", "--save")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "saved to" in done.stderr
    return live_stack


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_contiguous(messages: list[dict]) -> list[int]:
    """The messages start with a snapshot at seq S, then carry S+1, S+2, ... with no gap or repeat."""
    assert messages[0]["type"] == "snapshot"
    seqs = [messages[0]["job"]["seq"]] + [m["seq"] for m in messages[1:] if m["type"] != "snapshot"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    return seqs


def start_watch(stack, job_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jobcast.cli.main", "watch", job_id, "--json"],
        env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def submit_id(stack, *params: str) -> str:
    done = stack.jobcast("submit", "demo.count", *params)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- against the real stack -------------------------------------------------------------


def test_submit_follow_json_shows_every_event_until_succeeded(cli):
    done = cli.jobcast("submit", "demo.count", "--param", "steps=30", "--param", "interval_ms=20", "--follow", "--json")
    assert done.returncode == 0, done.stderr
    messages = json_lines(done.stdout)
    seqs = assert_contiguous(messages)
    last = messages[-1]
    assert last["type"] == "state" and last["state"] == "succeeded" and last["result"] == {"counted": 30}
    assert seqs[-1] == last["seq"]
    assert "succeeded" in done.stderr and "Traceback" not in done.stderr


def test_submit_prints_the_job_id_alone_and_params_are_json(cli):
    job_id = submit_id(cli, "--param", "steps=3", "--param", "fail_at=null", "--param", "interval_ms=0")
    assert str(uuid.UUID(job_id)) == job_id
    with cli.client(USER) as client:
        job = client.get(f"/api/jobs/{job_id}/").json()
    assert job["params"] == {"steps": 3, "fail_at": None, "interval_ms": 0}


def test_submit_with_an_idempotency_key_returns_the_same_job(cli):
    key = f"cli-{uuid.uuid4()}"
    first = submit_id(cli, "--param", "steps=1", "--idempotency-key", key)
    again = cli.jobcast("submit", "demo.count", "--param", "steps=1", "--idempotency-key", key)
    assert again.returncode == 0 and again.stdout.strip() == first


def test_submit_bad_params_exits_2_with_the_field_error(cli):
    done = cli.jobcast("submit", "demo.count", "--param", "steps=0")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Invalid params" in done.stderr and "steps" in done.stderr
    assert "Traceback" not in done.stderr


def test_submit_unknown_kind_and_malformed_param(cli):
    done = cli.jobcast("submit", "no.such.kind")
    assert done.returncode == 2 and "kind" in done.stderr and "Traceback" not in done.stderr
    done = cli.jobcast("submit", "demo.count", "--param", "steps")
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr


def test_a_bad_token_exits_2_with_a_hint(cli):
    done = cli.jobcast("submit", "demo.count", env=dict(JOBCAST_TOKEN="not-a-token"))
    assert done.returncode == 2 and "jobcast token" in done.stderr, done.stderr
    done = cli.jobcast("watch", str(uuid.uuid4()), env=dict(JOBCAST_TOKEN="not-a-token"))
    assert done.returncode == 2 and "not authenticated" in done.stderr, done.stderr


def test_submit_when_the_server_is_unreachable_exits_1(cli):
    done = cli.jobcast("submit", "demo.count", env=dict(JOBCAST_URL=f"http://127.0.0.1:{free_port()}"))
    assert done.returncode == 1
    assert "cannot reach" in done.stderr and "Traceback" not in done.stderr


def test_no_token_tells_how_to_make_one(cli, tmp_path):
    for args in (("submit", "demo.count"), ("watch", str(uuid.uuid4()))):
        done = cli.jobcast(*args, env=dict(JOBCAST_CONFIG=str(tmp_path / "none.json")))
        assert done.returncode == 2
        assert "jobcast token <username> --create-user --save" in done.stderr


def test_watch_unknown_job_exits_2_not_found(cli):
    done = cli.jobcast("watch", str(uuid.uuid4()), "--json")
    assert done.returncode == 2
    assert "not found" in done.stderr and "Traceback" not in done.stderr
    done = cli.jobcast("watch", "not-a-uuid")
    assert done.returncode == 2 and "not found" in done.stderr


def test_watch_another_users_job_is_not_found(cli):
    with cli.client("e2e-cli-other") as client:
        other = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 1}}).json()
    done = cli.jobcast("watch", other["id"])
    assert done.returncode == 2 and "not found" in done.stderr


def test_watch_a_finished_job_and_a_failed_one(cli):
    job_id = submit_id(cli, "--param", "steps=4", "--param", "fail_at=2")
    done = cli.jobcast("watch", job_id, "--json")
    assert done.returncode == 1, done.stderr
    messages = json_lines(done.stdout)
    final = messages[-1]["job"] if messages[-1]["type"] == "snapshot" else messages[-1]
    assert final["state"] == "failed" and final["error"]["type"]
    assert f"job {job_id} failed" in done.stderr and final["error"]["type"] in done.stderr


def test_follow_with_the_progress_bar(cli):
    done = cli.jobcast("submit", "demo.count", "--param", "steps=10", "--param", "interval_ms=10", "--follow")
    assert done.returncode == 0, done.stderr
    assert "demo.count" in done.stdout
    assert "succeeded" in done.stdout.splitlines()[-1] and '{"counted": 10}' in done.stdout
    assert "Traceback" not in done.stderr


def run_in_a_terminal(stack, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run a `jobcast` command with a pseudo-terminal (120x40) as stdin, stdout and stderr,
    as a user at a shell would; returns its exit code and everything it wrote."""
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**stack.env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "jobcast.cli.main", *args], env=env,
        stdin=follower, stdout=follower, stderr=follower, close_fds=True,
    )
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every end of the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        process.kill()
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_follow_draws_a_live_progress_bar_in_a_terminal(cli):
    # Without a terminal rich draws nothing live (the test above); with one it must.
    code, out = run_in_a_terminal(
        cli, "submit", "demo.count", "--param", "steps=20", "--param", "interval_ms=100", "--follow"
    )
    assert code == 0, out
    assert "\x1b[?25l" in out  # rich's live display hid the cursor: it is drawing in place
    text = ANSI.sub("", out)
    assert "━" in text  # the bar itself
    counts = {int(n) for n in re.findall(r"\b(\d+)/20\b", text)}
    assert 20 in counts and counts & set(range(1, 20)), counts  # drawn while filling, then full
    assert "100%" in text
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert re.fullmatch(r"job [0-9a-f-]{36} succeeded \(result: \{\"counted\": 20\}\)", lines[-1]), lines[-3:]
    assert "Traceback" not in text


def test_watch_cancelled_job_exits_3(cli):
    job_id = submit_id(cli, "--param", "steps=10000", "--param", "interval_ms=20")
    watcher = start_watch(cli, job_id)
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["type"] == "snapshot" and first["job"]["id"] == job_id
        with cli.client(USER) as client:
            assert client.post(f"/api/jobs/{job_id}/cancel/").status_code == 202
        watcher.wait(timeout=60)
        # Read through the same buffered stream as readline() above: communicate() reads the
        # raw pipe and would miss lines readline() had already buffered (it lost seq 8 once).
        out, err = watcher.stdout.read(), watcher.stderr.read()
    finally:
        watcher.kill()
    assert watcher.returncode == 3, err
    messages = [first, *json_lines(out)]
    assert_contiguous(messages)
    assert messages[-1]["state"] == "cancelled"


def test_ctrl_c_stops_watching_with_130_and_leaves_the_job_running(cli):
    job_id = submit_id(cli, "--param", "steps=10000", "--param", "interval_ms=20")
    watcher = start_watch(cli, job_id)
    try:
        assert json.loads(watcher.stdout.readline())["type"] == "snapshot"
        os.kill(watcher.pid, signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 130, err
    assert "Traceback" not in err and "stopped watching" in err
    with cli.client(USER) as client:
        assert client.get(f"/api/jobs/{job_id}/").json()["state"] in ("queued", "running")
        client.post(f"/api/jobs/{job_id}/cancel/")


# --- resume logic, against a local server that misbehaves on purpose -------------------------


JOB_ID = "7b0f3c8e-0000-4000-8000-000000000001"


def event(seq: int, **fields) -> str:
    base = {"type": "progress", "job_id": JOB_ID, "seq": seq, "ts": 1.0, "current": seq, "total": 20,
            "percent": seq * 5.0, "message": f"step {seq}"}
    return json.dumps({**base, **fields})


def snapshot(seq: int, reset: bool = False) -> str:
    job = {"id": JOB_ID, "kind": "demo.count", "state": "running", "seq": seq, "result": None, "error": None,
           "progress": {"current": seq, "total": 20, "percent": seq * 5.0, "message": None}}
    return json.dumps({"type": "snapshot", "job": job, "reset": reset})


def terminal(seq: int) -> str:
    return event(seq, type="state", state="succeeded", result={"counted": 20}, error=None)


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
        # 1: snapshot at seq 3, events 4..9, then the connection dies.
        lambda ws: drop_after(ws, [snapshot(3), *(event(s) for s in range(4, 10))]),
        # 2: replays 8..12 (8 and 9 are duplicates to ignore), then "server restarting".
        lambda ws: close_after(ws, [event(s) for s in range(8, 13)], 1012),
        # 3: "too slow": the client must come back with after=12.
        lambda ws: close_after(ws, [], 4408),
        # 4: history was trimmed: a reset snapshot at 15, then 16..19 and the terminal event.
        lambda ws: close_after(ws, [snapshot(15, reset=True), *(event(s) for s in range(16, 20)), terminal(20)], 1000),
    ]


EXPECTED_PATHS = [f"/ws/jobs/{JOB_ID}/", f"/ws/jobs/{JOB_ID}/?after=9", f"/ws/jobs/{JOB_ID}/?after=12",
                  f"/ws/jobs/{JOB_ID}/?after=12"]


async def test_follower_resumes_after_drops_without_gaps_or_duplicates():
    server = FlakyServer(resume_script())
    received = []
    retries = []
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        follower = JobFollower(
            ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok",
            on_message=received.append, on_retry=lambda reason, delay: retries.append(reason),
            backoff=Backoff(initial=0.05, cap=0.2, give_up_after=30),
        )
        final = await asyncio.wait_for(follower.run(), 30)
    assert final == {"state": "succeeded", "result": {"counted": 20}, "error": None}
    assert server.paths == EXPECTED_PATHS
    assert server.auth == ["Bearer tok"] * 4
    assert [m["seq"] for m in received if m["type"] != "snapshot"] == [*range(4, 13), *range(16, 21)]
    assert [m["reset"] for m in received if m["type"] == "snapshot"] == [False, True]
    assert [m["current"] for m in received if m["type"] == "progress"][-1] == 19
    assert len(retries) == 3 and "1006" in retries[0] and "1012" in retries[1] and "4408" in retries[2]


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


@pytest.mark.parametrize("code, words", [(4404, "not found"), (4401, "not authenticated")])
async def test_follower_fatal_close_codes(code, words):
    server = FlakyServer([lambda ws: close_after(ws, [], code)])
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        follower = JobFollower(ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok", on_message=print)
        with pytest.raises(FollowError) as caught:
            await asyncio.wait_for(follower.run(), 10)
    assert caught.value.exit_code == 2 and words in caught.value.message
    assert len(server.paths) == 1  # no retry


async def test_follower_does_not_retry_its_own_callback_errors():
    """A broken stdout (`watch | head`) is not a network problem: it ends the follow at once."""
    server = FlakyServer(resume_script())

    def broken_pipe(message):
        raise BrokenPipeError(32, "Broken pipe")

    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        follower = JobFollower(ws_url_for(f"http://127.0.0.1:{port}", JOB_ID), "tok", on_message=broken_pipe)
        with pytest.raises(BrokenPipeError):
            await asyncio.wait_for(follower.run(), 10)
    assert len(server.paths) == 1


async def test_follower_gives_up_after_its_deadline():
    retries = []
    follower = JobFollower(
        ws_url_for(f"http://127.0.0.1:{free_port()}", JOB_ID), "tok", on_message=print,
        on_retry=lambda reason, delay: retries.append(delay),
        backoff=Backoff(initial=0.05, cap=0.4, give_up_after=1.0),
    )
    with pytest.raises(FollowError) as caught:
        await asyncio.wait_for(follower.run(), 30)
    assert caught.value.exit_code == 1 and "gave up" in caught.value.message
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
