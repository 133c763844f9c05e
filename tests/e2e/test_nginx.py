"""The front door (real nginx, rendered from deploy/nginx/jobcast.conf.template) in front of the tiers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from jobcast.cli.stack import find_nginx

pytestmark = [pytest.mark.e2e]


def test_the_rendered_config_passes_nginx_t(live_stack):
    conf = live_stack.data_dir / "nginx" / "nginx.conf"
    done = subprocess.run([find_nginx(), "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


REPO = Path(__file__).resolve().parents[2]
# `server <name> resolve` in an upstream (re-resolve the name while running): nginx >= 1.27.3.
NGINX_RESOLVE_MIN = (1, 27, 3)


def compose_conf_for_local_nginx(text: str, prefix: Path) -> str:
    """deploy/nginx/compose.conf made checkable by this host's nginx (Debian's 1.22 has no
    `resolve`, and Docker's service names do not resolve here): `resolve` stripped, the
    upstream host names mapped to 127.0.0.1, /tmp/ paths moved into `prefix`."""
    names = set(re.findall(r"^\s*server ([A-Za-z][\w.-]*):\d+", text, flags=re.MULTILINE))
    assert names == {"web", "ws"}, names
    stripped = re.sub(r"^(\s*server \S+) resolve\b", r"\1", text, flags=re.MULTILINE)
    assert stripped != text, "compose.conf has no `server ... resolve` any more: update this test"
    for name in names:
        stripped = re.sub(rf"^(\s*server ){re.escape(name)}:", r"\g<1>127.0.0.1:", stripped, flags=re.MULTILINE)
    return stripped.replace(" /tmp/", f" {prefix}/")


def nginx_t(conf: Path) -> subprocess.CompletedProcess:
    nginx = find_nginx()
    assert nginx, "nginx is not installed (scripts/system-deps test installs it)"
    return subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)


def test_the_compose_config_passes_nginx_t(tmp_path):
    text = (REPO / "deploy" / "nginx" / "compose.conf").read_text()
    conf = tmp_path / "nginx.conf"
    conf.write_text(compose_conf_for_local_nginx(text, tmp_path))
    done = nginx_t(conf)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr
    # The check can fail: the same file with a typo does not pass.
    conf.write_text(compose_conf_for_local_nginx(text.replace("proxy_buffering off;", "proxy_bufering off;"), tmp_path))
    assert nginx_t(conf).returncode != 0


def test_compose_pins_an_nginx_that_has_upstream_resolve():
    import yaml

    image = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["nginx"]["image"]
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)\.(\d+)(-alpine)?", image)
    assert match, f"pin an exact nginx version, not {image}"
    assert tuple(int(part) for part in match.groups()[:3]) >= NGINX_RESOLVE_MIN, image
    assert "1.27.3" in (REPO / "docs" / "deploy.md").read_text(), "docs/deploy.md states the minimum nginx"


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
