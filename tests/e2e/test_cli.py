"""The client commands against the real stack: `submit`, `watch`, `list`, `get`, `cancel`, `kinds`.

The resuming watch against a server that drops connections on purpose is in
tests/integration/test_client_watch.py."""

from __future__ import annotations

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
    assert job["params"] == {"steps": 3, "fail_at": None, "interval_ms": 0, "log_every": 0}


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


def test_list_get_cancel_and_kinds(cli):
    running = submit_id(cli, "--param", "steps=10000", "--param", "interval_ms=20")
    done = submit_id(cli, "--param", "steps=2")
    wait = cli.jobcast("watch", done, "--json")
    assert wait.returncode == 0, wait.stderr

    listed = cli.jobcast("list", "--json", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    jobs = json_lines(listed.stdout)
    ids = [job["id"] for job in jobs]
    assert running in ids and done in ids and ids.index(running) > ids.index(done)  # newest first
    table = cli.jobcast("list", "--state", "succeeded")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["ID", "KIND", "STATE"]
    assert done in table.stdout and running not in table.stdout and "100%" in table.stdout

    shown = cli.jobcast("get", done)
    assert shown.returncode == 0 and "state:     succeeded" in shown.stdout and '{"counted": 2}' in shown.stdout
    assert json.loads(cli.jobcast("get", done, "--json").stdout)["result"] == {"counted": 2}

    cancelled = cli.jobcast("cancel", running)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {running}" in cancelled.stdout
    watched = cli.jobcast("watch", running, "--json")
    assert watched.returncode == 3
    again = cli.jobcast("cancel", running, "--json")
    assert again.returncode == 2 and "already cancelled" in again.stderr and again.stdout == ""
    missing = cli.jobcast("get", str(uuid.uuid4()))
    assert missing.returncode == 2 and "Not found" in missing.stderr
    assert cli.jobcast("cancel", "nope").returncode == 2

    kinds = cli.jobcast("kinds")
    assert kinds.returncode == 0, kinds.stderr
    assert "demo.count  Count to N" in kinds.stdout
    assert re.search(r"^  steps +integer, 1\.\.1000000, default 100  How many steps to count\.$", kinds.stdout, re.M)
    assert re.search(r"^  fail_at +integer\|null, default null", kinds.stdout, re.M)
    names = [kind["name"] for kind in json_lines(cli.jobcast("kinds", "--json").stdout)]
    assert {"demo.count", "files.checksum", "maintenance.prune_jobs"} <= set(names)


def test_new_commands_without_a_server_or_a_token(cli, tmp_path):
    done = cli.jobcast("list", env=dict(JOBCAST_URL=f"http://127.0.0.1:{free_port()}"))
    assert done.returncode == 1 and "cannot reach" in done.stderr and "Traceback" not in done.stderr
    done = cli.jobcast("kinds", env=dict(JOBCAST_CONFIG=str(tmp_path / "none.json")))
    assert done.returncode == 2 and "jobcast token <username> --create-user --save" in done.stderr
