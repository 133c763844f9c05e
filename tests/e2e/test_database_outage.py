"""PostgreSQL unreachable under the whole running stack: 503 JSON, never a 500 page, and no half-created job.

The stack reaches PostgreSQL through a TCP proxy the test cuts (every connection dropped,
new ones refused) and restores (docs/reliability.md, "PostgreSQL unreachable").
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import start_stack
from tests.support import TcpProxy, stream_to_the_end, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

JOB = {"kind": "demo.count", "params": {"steps": 3}}


@pytest.fixture
def stack_behind_a_database_proxy(tmp_path):
    """The whole stack on PostgreSQL, reached through a proxy the test controls: (stack, proxy)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL: this runs in the PostgreSQL pass (make test-postgres)")
    server = urlsplit(url)
    proxy = TcpProxy(server.port or 5432, server.hostname or "127.0.0.1")
    stack, stop = start_stack(tmp_path, database_port=proxy.port, JOBCAST_FRONT_DOOR="nginx")
    try:
        yield stack, proxy
    finally:
        proxy.restore()  # the stack's stop drops its database through the server itself; its tiers may still talk
        stop()
        proxy.close()


def assert_unavailable(response: httpx.Response) -> None:
    """503 with the contract's JSON body naming the database, and a Retry-After."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.text[:500]
    body = response.json()
    assert set(body) == {"detail", "errors"} and "database" in body["detail"], body
    assert int(response.headers["retry-after"]) > 0


def assert_no_traceback(stack) -> None:
    """No tier logged a traceback since the stack was up: each outage was met with a one-line message."""
    log = stack.log.read_text().split("up at", 1)[1]
    assert "Traceback" not in log, log[-3000:]


def wait_for_jobs_to_end(client: httpx.Client, ids: list[str]) -> dict[str, dict]:
    """Each job's document once every one of them has ended."""
    def ended():
        docs = {job_id: client.get(f"/api/jobs/{job_id}/").json() for job_id in ids}
        return docs if all(doc["state"] in ("succeeded", "failed", "cancelled") for doc in docs.values()) else None

    return wait_until(ended, 60, "the jobs to end", interval=0.3)


def test_an_unreachable_database_answers_503_json_and_creates_no_half_job(stack_behind_a_database_proxy):
    stack, proxy = stack_behind_a_database_proxy
    with stack.client() as client:
        before = [client.post("/api/jobs/", json=JOB) for _ in range(3)]
        assert [r.status_code for r in before] == [201] * 3
        accepted = [r.json()["id"] for r in before]
        wait_for_jobs_to_end(client, accepted)  # nothing of theirs is in flight when the database goes

        proxy.cut()
        refused = 0
        for _ in range(5):
            response = client.post("/api/jobs/", json=JOB)
            assert_unavailable(response)
            refused += 1
        assert_unavailable(client.get("/api/jobs/"))
        assert_unavailable(client.get(f"/api/jobs/{accepted[0]}/"))
        assert_unavailable(client.post(f"/api/jobs/{accepted[0]}/cancel/"))
        assert_unavailable(client.get(f"/api/jobs/{accepted[0]}/events/"))
        assert_unavailable(client.post("/api/ws-tickets/"))
        # A socket cannot be authenticated: its handshake is closed with 1013 (try again later).
        url, headers = f"{stack.ws_url}/ws/jobs/{accepted[0]}/?after=0", {"Authorization": f"Bearer {stack.token('e2e')}"}
        assert asyncio.run(asyncio.wait_for(stream_to_the_end(url, headers), 30)) == ([], 1013)
        for ready in (f"{stack.url}/readyz", f"http://127.0.0.1:{stack.web_port}/readyz",
                      f"http://127.0.0.1:{stack.ws_port}/readyz"):
            response = httpx.get(ready, timeout=10)
            assert response.status_code == 503, (ready, response.text)
            assert response.json()["checks"]["database"].startswith("error"), response.json()

        proxy.restore()
        wait_until(lambda: httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200, 30, "the stack to be ready")
        after = [client.post("/api/jobs/", json=JOB) for _ in range(2)]
        assert [r.status_code for r in after] == [201] * 2
        accepted += [r.json()["id"] for r in after]

        listed = client.get("/api/jobs/", params={"limit": 100}).json()["items"]
        # Exactly the jobs that got a 201: no row for the 5 refused submissions.
        assert sorted(job["id"] for job in listed) == sorted(accepted) and refused == 5
        # And each of them had its queue message: the worker ran every one to its end.
        docs = wait_for_jobs_to_end(client, accepted)
        assert {doc["state"] for doc in docs.values()} == {"succeeded"}, docs
    assert_no_traceback(stack)


def test_jobs_a_worker_holds_while_the_database_is_away_are_delivered_again_and_finish(stack_behind_a_database_proxy):
    stack, proxy = stack_behind_a_database_proxy
    slow = {"kind": "demo.count", "params": {"steps": 40, "interval_ms": 100}}
    with stack.client() as client:
        running = [client.post("/api/jobs/", json=slow).json()["id"] for _ in range(2)]  # the worker's 2 processes
        wait_until(lambda: all(client.get(f"/api/jobs/{job_id}/").json()["seq"] >= 3 for job_id in running),
                   30, "both jobs to be running")
        queued = client.post("/api/jobs/", json=JOB).json()["id"]  # waits for a free process
        assert client.get(f"/api/jobs/{queued}/").json()["state"] == "queued"

        proxy.cut()
        # The running jobs' code ends but their rows cannot be written; the queued one cannot be
        # started: each is sent again 5 s later, as long as it takes.
        wait_until(lambda: all(f"job {job_id}: the database cannot be reached" in stack.log.read_text()
                               for job_id in (*running, queued)), 40, "each job to meet the outage", interval=0.5)
        proxy.restore()

        docs = wait_for_jobs_to_end(client, [*running, queued])
        streams = {job_id: asyncio.run(asyncio.wait_for(stream_to_the_end(
            f"{stack.ws_url}/ws/jobs/{job_id}/?after=0", {"Authorization": f"Bearer {stack.token('e2e')}"}), 30))
            for job_id in docs}
    assert {doc["state"] for doc in docs.values()} == {"succeeded"}, docs
    assert [docs[job_id]["attempts"] for job_id in running] == [2, 2]  # their end was never written: run again
    assert docs[queued]["attempts"] == 1
    for job_id, (messages, code) in streams.items():
        assert code == 1000 and [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), job_id
        assert [m["state"] for m in messages if m["type"] == "state"] == ["running", "succeeded"], job_id
    assert_no_traceback(stack)
