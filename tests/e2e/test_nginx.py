"""The front door (real nginx, rendered from deploy/nginx/jobcast.conf.template) in front of the tiers."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from jobcast.cli.stack import find_nginx

pytestmark = [pytest.mark.e2e]


def test_the_rendered_config_passes_nginx_t(live_stack):
    conf = live_stack.data_dir / "nginx" / "nginx.conf"
    done = subprocess.run([find_nginx(), "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def test_a_body_over_the_limit_gets_json_413_from_nginx(live_stack):
    with live_stack.client() as client:
        response = client.post("/api/jobs/", content=b"x" * (1_048_576 + 10), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "Request body too large.", "errors": []}


def test_static_files_come_from_nginx_with_cache_headers(live_stack):
    docs = httpx.get(f"{live_stack.url}/api/docs/", timeout=10)
    assert docs.status_code == 200 and "/static/ninja/" in docs.text
    css = httpx.get(f"{live_stack.url}/static/ninja/swagger-ui.css", timeout=10)
    assert css.status_code == 200
    assert css.headers["server"] == "nginx" and "max-age=604800" in css.headers["cache-control"]


def test_json_is_gzipped_and_security_headers_are_set(live_stack):
    with live_stack.client() as client:
        response = client.get("/api/schema/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("ping_interval,survives", [(1, True), (30, False)])
def test_pings_keep_an_idle_watcher_open_past_nginx_read_timeout(tmp_path, ping_interval, survives):
    """nginx's WebSocket read timeout scaled down to 3 s: an idle watcher lives only thanks to the pings."""
    import asyncio

    import websockets

    from tests.e2e.conftest import start_stack

    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="nginx", JOBCAST_PROXY_WS_TIMEOUT="3",
                              JOBCAST_WS_PING_INTERVAL=str(ping_interval))
    try:
        with stack.client() as client:
            job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 1, "interval_ms": 0}})
        ticket_owner = stack.token("e2e")

        async def idle_watch():
            # A queued job that never runs would be idler still; the user stream is idle too.
            async with websockets.connect(f"{stack.ws_url}/ws/jobs/", additional_headers={
                    "Authorization": f"Bearer {ticket_owner}"}, ping_interval=None) as ws:
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 8)
                except asyncio.TimeoutError:
                    return "open after 8 s idle"
                except websockets.ConnectionClosed as exc:
                    return f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"

        assert job.status_code == 201
        outcome = asyncio.run(idle_watch())
        if survives:
            assert outcome == "open after 8 s idle"
        else:
            assert outcome.startswith("closed"), outcome
    finally:
        stop()
