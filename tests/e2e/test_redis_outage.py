"""Losing Redis, or the supervisor itself: the stack degrades, recovers, and never leaves a job without its end.

Against `jobcast run` as real processes: Redis is SIGKILLed while a job runs; the supervisor
starts it again (empty, on the same port); meanwhile the API answers 503 JSON; afterwards the
job ends, the same worker process takes a new job, and a watcher that connects with no
`after`, `after=0` or `after=N` sees how.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from jobcast.cli.stack import port_open
from tests.e2e.conftest import start_stack
from tests.support import stream_to_the_end, wait_until

pytestmark = [pytest.mark.e2e]

TERMINAL = {"succeeded", "failed", "cancelled"}


def job_of(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/api/jobs/{job_id}/")
    assert response.status_code == 200, response.text
    return response.json()


async def watch_to_the_end(url: str, token: str) -> tuple[list[dict], int]:
    """Every message of one connection, and its close code."""
    return await stream_to_the_end(url, {"Authorization": f"Bearer {token}"})


def what_the_watcher_learned(messages: list[dict]) -> str | None:
    """The terminal state a client following the contract would show, from what it received."""
    for message in reversed(messages):
        if message["type"] == "state" and message["state"] in TERMINAL:
            return message["state"]
        if message["type"] == "snapshot" and message["job"]["state"] in TERMINAL:
            return message["job"]["state"]
    return None


def test_a_redis_crash_mid_job_is_an_outage_not_data_loss(tmp_path):
    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="nginx")
    try:
        token = stack.token("e2e")
        with stack.client() as client:
            job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 200, "interval_ms": 25}})
            assert job.status_code == 201
            job_id = job.json()["id"]
            wait_until(lambda: job_of(client, job_id)["seq"] >= 20, 30, "the job to publish 20 events")
            seen_before = job_of(client, job_id)["seq"]
            tiers = stack.tier_processes()

            (redis_pid,) = stack.pids("redis-server")
            os.kill(redis_pid, signal.SIGKILL)
            # While Redis is away the API says so: 503 JSON with Retry-After, never a 500.
            statuses, unavailable = [], None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                response = client.get(f"/api/jobs/{job_id}/")
                statuses.append(response.status_code)
                if response.status_code == 503 and unavailable is None:
                    unavailable = response
                if response.status_code == 200 and unavailable is not None:
                    break
                time.sleep(0.01)
            assert unavailable is not None, statuses
            assert set(statuses) <= {200, 503}, statuses
            assert unavailable.headers["content-type"].startswith("application/json")
            assert unavailable.json()["detail"].startswith("Service unavailable") and unavailable.headers["Retry-After"]
            assert "127.0.0.1" not in unavailable.text  # no address or credentials in the body

            # The supervisor started Redis again (a new pid, the same port).
            wait_until(lambda: stack.pids("redis-server") not in ([], [redis_pid]), 10, "Redis to be restarted")
            assert b"redis exited with code -9; starting it again" in stack.log.read_bytes()

            final = wait_until(lambda: (j := job_of(client, job_id))["state"] in TERMINAL and j, 90, "the job's end")
            # The worker rode the outage out in place (jobcast.jobs.broker) and still takes jobs.
            after = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 3, "interval_ms": 10}})
            assert after.status_code == 201, after.text
            wait_until(lambda: job_of(client, after.json()["id"])["state"] == "succeeded", 60,
                       "a job submitted after the outage to succeed")
        assert stack.tier_processes()["worker"] == tiers["worker"]
        assert b"worker exited with code" not in stack.log.read_bytes()
        # It waited the outage out and finished, its row carrying the seq of its last event.
        assert final["state"] == "succeeded" and final["result"] == {"counted": 200}, final
        assert final["seq"] > seen_before and final["progress"]["current"] == 200

        for query in ("", "?after=0", f"?after={seen_before}"):
            messages, code = asyncio.run(asyncio.wait_for(
                watch_to_the_end(f"{stack.ws_url}/ws/jobs/{job_id}/{query}", token), 30))
            assert messages, f"silence on {query or 'no after'}"
            assert what_the_watcher_learned(messages) == "succeeded", (query, messages[-3:])
            assert code == 1000
        with stack.client() as client:
            events = client.get(f"/api/jobs/{job_id}/events/", params={"after": 0}).json()
        # History from before the crash is gone with the old Redis: the API says so.
        assert events["complete"] is False and events["events"][-1]["state"] == "succeeded"
    finally:
        stop()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children...)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            children = open(f"/proc/{parent}/task/{parent}/children").read().split()
        except OSError:
            continue
        for child in map(int, children):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (zombies count as gone)."""
    living = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    living.add(pid)
        except OSError:
            pass
    return living


def test_children_die_with_a_sigkilled_supervisor_and_a_new_stack_starts(tmp_path):
    stack, stop = start_stack(tmp_path / "first", JOBCAST_FRONT_DOOR="nginx", JOBCAST_WS_DRAIN_SECONDS="1",
                              JOBCAST_WS_SHUTDOWN_GRACE_SECONDS="1", JOBCAST_WORKER_SHUTDOWN_SECONDS="2")
    try:
        children = descendants(stack.process.pid)
        assert len(children) >= 5  # redis, gunicorn (+ workers), ws, celery (+ pool), nginx (+ workers)
        os.kill(stack.process.pid, signal.SIGKILL)  # as the OOM killer would
        stack.process.wait()
        wait_until(lambda: not alive(children), 40, "the orphaned tiers to stop")
        ports = [int(stack.env[name]) for name in ("JOBCAST_PORT", "JOBCAST_WEB_PORT", "JOBCAST_WS_PORT")]
        assert not any(port_open(port) for port in ports)
    finally:
        stop()
    # A new stack on the very same ports comes up.
    again, stop_again = start_stack(tmp_path / "second", JOBCAST_FRONT_DOOR="nginx",
                                    **{name: stack.env[name] for name in ("JOBCAST_PORT", "JOBCAST_WEB_PORT", "JOBCAST_WS_PORT")})
    try:
        assert httpx.get(f"{again.url}/readyz").status_code == 200
    finally:
        stop_again()


def test_a_second_ctrl_c_stops_everything_at_once(tmp_path):
    # A running job the worker would give 30 s to finish holds the first Ctrl-C's orderly stop.
    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="nginx", JOBCAST_WORKER_SHUTDOWN_SECONDS="30")
    try:
        with stack.client() as client:
            job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 600, "interval_ms": 100}})
            wait_until(lambda: job_of(client, job.json()["id"])["state"] == "running", 30, "the job to run")
        children = descendants(stack.process.pid)
        os.kill(stack.process.pid, signal.SIGINT)
        time.sleep(2.0)
        assert stack.process.poll() is None  # still stopping in order: the worker waits for its job
        os.kill(stack.process.pid, signal.SIGINT)
        started = time.monotonic()
        stack.process.wait(timeout=15)
        wait_until(lambda: not alive(children), 10, "every child to be gone")
        assert time.monotonic() - started < 10
        assert b"stopping now" in stack.log.read_bytes()
    finally:
        stop()
