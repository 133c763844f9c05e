"""The three tiers and nginx as real processes: submit over HTTP, watch over WebSocket, drop and resume."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
import websockets

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def submit(client, **params) -> dict:
    response = client.post("/api/jobs/", json={"kind": "demo.count", "params": params})
    assert response.status_code == 201, response.text
    return response.json()


async def read_events(url: str, token: str, *, limit: int | None = None) -> tuple[list[dict], int | None]:
    """Messages from a job stream until it closes, or until `limit` events then drop the connection."""
    messages = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        async for raw in ws:
            messages.append(orjson.loads(raw))
            if limit is not None and sum(1 for m in messages if "seq" in m) >= limit:
                return messages, None  # dropped by us, mid-stream
        return messages, ws.close_code
    return messages, None


def test_submit_watch_drop_and_resume_through_nginx(live_stack):
    token = live_stack.token("e2e")
    with live_stack.client() as client:
        job = submit(client, steps=60, interval_ms=20)
    stream = f"{live_stack.ws_url}/ws/jobs/{job['id']}/"

    first, code = asyncio.run(read_events(stream, token, limit=10))
    assert code is None
    assert first[0]["type"] == "snapshot" and first[0]["job"]["id"] == job["id"]
    seen = [m["seq"] for m in first[1:]]
    start = first[0]["job"]["seq"]
    assert seen == list(range(start + 1, start + 1 + len(seen)))

    rest, code = asyncio.run(read_events(f"{stream}?after={seen[-1]}", token))
    assert code == 1000
    resumed = [m["seq"] for m in rest]
    assert all(m["type"] != "snapshot" for m in rest)
    assert resumed == list(range(seen[-1] + 1, seen[-1] + 1 + len(resumed)))
    assert rest[-1]["type"] == "state" and rest[-1]["state"] == "succeeded"
    assert rest[-1]["result"] == {"counted": 60}

    # The whole history from the start: seq 1..last, contiguous, running first, succeeded last.
    everything, code = asyncio.run(read_events(f"{stream}?after=0", token))
    assert code == 1000
    assert [m["seq"] for m in everything] == list(range(1, rest[-1]["seq"] + 1))
    assert everything[0]["state"] == "running" and everything[-1]["state"] == "succeeded"

    with live_stack.client() as client:
        final = client.get(f"/api/jobs/{job['id']}/").json()
    assert final["state"] == "succeeded" and final["seq"] == rest[-1]["seq"] and final["attempts"] == 1


def test_a_frame_over_64_kib_closes_the_socket_with_1009(live_stack):
    token = live_stack.token("e2e")
    with live_stack.client() as client:
        job = submit(client, steps=1000, interval_ms=50)

    async def send_big():
        headers = {"Authorization": f"Bearer {token}"}
        async with websockets.connect(f"{live_stack.ws_url}/ws/jobs/{job['id']}/", additional_headers=headers,
                                      max_size=None) as ws:
            await ws.recv()  # the snapshot
            await ws.send("x" * (64 * 1024 + 1))
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    assert asyncio.run(send_big()) == 1009
    with live_stack.client() as client:
        assert client.post(f"/api/jobs/{job['id']}/cancel/").status_code == 202


def test_every_tier_serves_metrics_and_health_to_operators_only(live_stack):
    import httpx

    with live_stack.client() as client:
        job = submit(client, steps=5)
    asyncio.run(read_events(f"{live_stack.ws_url}/ws/jobs/{job['id']}/?after=0", live_stack.token("e2e")))

    worker_port = int(re.search(rb"worker :(\d+)/metrics", live_stack.log.read_bytes()).group(1))
    web = httpx.get(f"http://127.0.0.1:{live_stack.web_port}/metrics").text
    ws = httpx.get(f"http://127.0.0.1:{live_stack.ws_port}/metrics").text
    worker = httpx.get(f"http://127.0.0.1:{worker_port}/metrics").text
    # Merged over gunicorn's and Celery's processes (multiprocess mode).
    assert re.search(r'jobcast_http_requests_total\{method="POST",route="/api/jobs/",status="201"\} [1-9]', web)
    assert re.search(r"jobcast_event_latency_seconds_count [1-9]", ws)
    assert re.search(r'jobcast_jobs_finished_total\{kind="demo.count",state="succeeded"\} [1-9]', worker)
    assert re.search(r'jobcast_events_published_total\{type="progress"\} [1-9]', worker)
    assert 'jobcast_queue_depth{queue="jobcast"}' in worker
    for port in (live_stack.web_port, live_stack.ws_port, worker_port):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    hidden = httpx.get(f"{live_stack.url}/metrics")
    assert hidden.status_code == 404 and hidden.json()["detail"] == "Not found."
