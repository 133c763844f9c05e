"""A worker process that dies mid-job: the job is delivered again and still ends `succeeded`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time

import httpx
import orjson
import pytest
import websockets

from tests.e2e.conftest import start_stack
from tests.support import REPO, stream_to_the_end, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def pool_children(live_stack) -> list[int]:
    """Celery's prefork pool processes (children of the worker's main process)."""
    celery = set(live_stack.pids("celery"))
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout.split()[2:]
    parents = dict(zip(map(int, out[0::2]), map(int, out[1::2])))
    return [pid for pid in celery if parents.get(pid) in celery]


async def all_events(url: str, token: str) -> tuple[list[dict], int]:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        messages = [orjson.loads(raw) async for raw in ws]
        return messages, ws.close_code


def test_killed_pool_process_job_is_redelivered_and_completes(live_stack):
    with live_stack.client() as client:
        job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 60, "interval_ms": 50}}).json()
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}/").json()["seq"] >= 5, 30, "the job to be running")
        children = pool_children(live_stack)
        assert children, "no celery pool processes found"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        messages, code = asyncio.run(asyncio.wait_for(
            all_events(f"{live_stack.ws_url}/ws/jobs/{job['id']}/?after=0", live_stack.token("e2e")), 90))
        final = client.get(f"/api/jobs/{job['id']}/").json()

    assert code == 1000
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1]["type"] == "state" and messages[-1]["state"] == "succeeded"
    assert [m["state"] for m in messages if m["type"] == "state"] == ["running", "succeeded"]
    assert any(m["type"] == "log" and "restarted" in m["message"] for m in messages)
    assert final["state"] == "succeeded" and final["attempts"] == 2
    assert time.monotonic() - killed_at < 60
    # The killed pool process never said it ended: its share of jobcast_jobs_running (1, the
    # job it was running) is dropped at the next scrape (jobcast.metrics.forget_dead_processes).
    worker_port = int(re.search(rb"worker :(\d+)/metrics", live_stack.log.read_bytes()).group(1))
    metrics = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10).text
    assert 'jobcast_jobs_running{kind="demo.count"} 0.0' in metrics, [
        line for line in metrics.splitlines() if line.startswith("jobcast_jobs_running")]
    assert re.search(r'jobcast_jobs_restarted_total\{kind="demo.count"\} [1-9]', metrics)


def test_sigterm_to_a_worker_requeues_a_long_job_after_the_soft_timeout(tmp_path):
    stack, stop = start_stack(tmp_path, JOBCAST_WORKER_SHUTDOWN_SECONDS="1", JOBCAST_WORKER_CONCURRENCY="1")
    try:
        with stack.client() as client:
            job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 80, "interval_ms": 50}}).json()
            wait_until(lambda: client.get(f"/api/jobs/{job['id']}/").json()["seq"] >= 5, 30, "the job to be running")
            main = [pid for pid in stack.pids("celery") if pid not in pool_children(stack)]
            assert len(main) == 1
            os.kill(main[0], signal.SIGTERM)
            messages, code = asyncio.run(asyncio.wait_for(
                all_events(f"{stack.ws_url}/ws/jobs/{job['id']}/?after=0", stack.token("e2e")), 90))
            final = client.get(f"/api/jobs/{job['id']}/").json()
        assert code == 1000 and messages[-1]["state"] == "succeeded"
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        assert final["attempts"] == 2
        assert b"worker exited" in stack.log.read_bytes()  # the supervisor started it again
    finally:
        stop()


# The recovery check's figures, shortened (production: 15 s and 30 s) so that a job whose whole
# worker vanished is queued again within seconds: 2 x lease + 2 x check period of the loss.
LEASE_SECONDS, RECOVERY_CHECK_SECONDS = 3, 2


@pytest.fixture(scope="module")
def recovering_stack(tmp_path_factory):
    """A stack whose workers look for abandoned jobs every 2 s, with the test kinds (sample.once) loaded."""
    stack, stop = start_stack(
        tmp_path_factory.mktemp("recovering"), JOBCAST_LEASE_SECONDS=str(LEASE_SECONDS),
        JOBCAST_RECOVERY_CHECK_SECONDS=str(RECOVERY_CHECK_SECONDS), JOBCAST_KIND_MODULES="tests.sample_kinds",
        PYTHONPATH=str(REPO),
    )
    try:
        yield stack
    finally:
        stop()


def kill_whole_worker(stack) -> None:
    """SIGKILL the worker's main process and its pool processes at once (its process group), as a lost host would."""
    main = [pid for pid in stack.pids("celery") if pid not in pool_children(stack)]
    assert len(main) == 1 and pool_children(stack), stack.pids("celery")
    # `jobcast run` starts each tier in a session of its own: the group is the worker and its pool only.
    assert os.getpgid(main[0]) == main[0]
    os.killpg(main[0], signal.SIGKILL)
    wait_until(lambda: not any(pid in stack.pids("celery") for pid in main), 10, "the worker to be gone")


def follow_to_the_end(stack, job_id: str) -> tuple[list[dict], int]:
    """Every event of the job from seq 1, read over the front door's WebSocket until it closes."""
    url = f"{stack.ws_url}/ws/jobs/{job_id}/?after=0"
    headers = {"Authorization": f"Bearer {stack.token('e2e')}"}
    return asyncio.run(asyncio.wait_for(stream_to_the_end(url, headers), 90))


def test_a_job_whose_whole_worker_was_sigkilled_runs_again_on_the_next_worker(recovering_stack):
    stack = recovering_stack
    with stack.client() as client:
        job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 60, "interval_ms": 50}}).json()
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}/").json()["seq"] >= 5, 30, "the job to be running")
        kill_whole_worker(stack)
        killed_at = time.monotonic()
        assert client.get(f"/api/jobs/{job['id']}/").json()["state"] == "running"  # nobody else would end it

        # The supervisor starts a new worker; its recovery check finds the job unheld twice and queues it again.
        messages, code = follow_to_the_end(stack, job["id"])
        recovered_in = time.monotonic() - killed_at
        final = client.get(f"/api/jobs/{job['id']}/").json()

    assert code == 1000
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert [m["state"] for m in messages if m["type"] == "state"] == ["running", "succeeded"]
    assert any(m["type"] == "log" and "restarted after its worker was lost (attempt 2)" in m["message"] for m in messages)
    assert final["state"] == "succeeded" and final["attempts"] == 2 and final["result"] == {"counted": 60}
    assert b"worker exited with code -9" in stack.log.read_bytes()
    assert b"queued 1 running jobs again whose worker vanished" in stack.log.read_bytes()
    # Worker start (seconds on a busy machine) + 2 x lease + 2 checks + the 3 s job, generously.
    assert recovered_in < 60


def test_a_kind_that_is_not_redelivered_fails_with_worker_lost_when_its_whole_worker_dies(recovering_stack, tmp_path):
    stack = recovering_stack
    runs = tmp_path / "runs"
    params = {"steps": 100, "interval_ms": 50, "runs_file": str(runs)}
    with stack.client() as client:
        job = client.post("/api/jobs/", json={"kind": "sample.once", "params": params}).json()
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}/").json()["seq"] >= 5, 30, "the job to be running")
        kill_whole_worker(stack)
        messages, code = follow_to_the_end(stack, job["id"])
        final = client.get(f"/api/jobs/{job['id']}/").json()

    assert code == 1000
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert [m["state"] for m in messages if m["type"] == "state"] == ["running", "failed"]
    assert final["state"] == "failed" and final["attempts"] == 2
    assert final["error"]["type"] == "WorkerLost"
    assert final["error"]["message"] == "the worker running the job was lost (its kind is not redelivered)"
    assert messages[-1]["error"] == final["error"]
    assert not any(m["type"] == "log" and "restarted" in m["message"] for m in messages)
    assert runs.read_text() == "ran\n"  # its code ran once, never again
