"""The front door (real nginx, rendered from deploy/nginx/jobcast.conf.template) in front of the tiers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from jobcast.cli.stack import find_nginx, free_port, port_open, render_nginx_config
from tests.support import stop_process, wait_until

pytestmark = [pytest.mark.e2e]


def test_the_rendered_config_passes_nginx_t(live_stack):
    conf = live_stack.data_dir / "nginx" / "nginx.conf"
    done = subprocess.run([find_nginx(), "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


REPO = Path(__file__).resolve().parents[2]
# What the edge adds to every response (the server block of the template).
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}
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
    assert "public" in css.headers["cache-control"]
    # The /static/ location has add_headers of its own, which cancel the server's: repeated there.
    assert SECURITY_HEADERS.items() <= css.headers.items(), dict(css.headers)


def test_every_location_with_add_header_repeats_the_security_headers():
    """nginx does not inherit add_header into a location that has one; the template must repeat them."""
    template = (REPO / "deploy" / "nginx" / "jobcast.conf.template").read_text()
    blocks = re.findall(r"location [^{]*\{[^}]*\}", template)
    with_headers = [block for block in blocks if "add_header" in block]
    assert with_headers, "no location adds headers: drop this test"
    for block in with_headers:
        for name, value in SECURITY_HEADERS.items():
            assert re.search(rf"add_header {name} {value} always;", block, flags=re.IGNORECASE), (name, block)


def test_json_is_gzipped_and_security_headers_are_set(live_stack):
    with live_stack.client() as client:
        response = client.get("/api/schema/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"
    assert SECURITY_HEADERS.items() <= response.headers.items(), dict(response.headers)


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


# --- the template in front of small local upstreams -------------------------------------------

@dataclass
class Upstream:
    """A tiny HTTP server standing in for a web instance: answers `status`, records each request."""

    status: int
    requests: list = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "Upstream":
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                upstream.requests.append({"method": self.command, "path": self.path,
                                          "headers": {k.lower(): v for k, v in self.headers.items()}})
                body = json.dumps(upstream.requests[-1]).encode()
                self.send_response(upstream.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_nginx(prefix: Path, web: list[str], trusted_proxies: str = "127.0.0.1", ws: list[str] | None = None):
    """Real nginx with the template rendered for these web (and ws) upstreams; returns (base URL, process)."""
    nginx = find_nginx()
    assert nginx, "nginx is not installed (scripts/system-deps test installs it)"
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "static").mkdir()
    (prefix / "static" / "app.css").write_text("body { color: black; }\n")
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_config(
        REPO / "deploy" / "nginx" / "jobcast.conf.template", listen=f"127.0.0.1:{port}", web=web, ws=ws or web,
        max_body_bytes=1_048_576, static_root=str(prefix / "static"), temp_dir=str(prefix),
        pid_file=str(prefix / "nginx.pid"), error_log=str(prefix / "error.log"),
        access_log=str(prefix / "access.log"), trusted_proxies=trusted_proxies,
    ))
    directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", directives])
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, 10, "nginx to listen")
        assert process.poll() is None, (prefix / "error.log").read_text()
    except BaseException:
        stop_process(process, signal.SIGTERM)
        raise
    return f"http://127.0.0.1:{port}", process


@pytest.fixture
def edge(tmp_path):
    """nginx whose load balancers are 127.0.0.1 (the test client), in front of one working web upstream."""
    good = Upstream(200).start()
    url, process = start_nginx(tmp_path / "nginx", [good.address])
    yield url, good
    stop_process(process, signal.SIGTERM)
    good.stop()


@pytest.fixture
def untrusted_edge(tmp_path):
    """The same, but the trusted load balancers are elsewhere (10.255.0.0/16): the test client is anyone."""
    good = Upstream(200).start()
    url, process = start_nginx(tmp_path / "nginx", [good.address], trusted_proxies="10.255.0.0/16")
    yield url, good
    stop_process(process, signal.SIGTERM)
    good.stop()


def test_a_trusted_load_balancers_client_address_and_proto_are_passed_on(edge):
    url, good = edge
    sent = httpx.get(f"{url}/api/jobs/", headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}).json()
    assert sent["headers"]["x-forwarded-for"] == "203.0.113.9"
    assert sent["headers"]["x-forwarded-proto"] == "https"  # TLS terminated at the load balancer
    plain = httpx.get(f"{url}/api/jobs/").json()
    assert plain["headers"]["x-forwarded-for"] == "127.0.0.1" and plain["headers"]["x-forwarded-proto"] == "http"


def test_an_untrusted_clients_forwarded_headers_are_not_believed(untrusted_edge):
    url, good = untrusted_edge
    for path in ("/api/jobs/", "/ws/jobs/"):
        sent = httpx.get(f"{url}{path}", headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}).json()
        assert sent["headers"]["x-forwarded-for"] == "127.0.0.1", (path, sent["headers"])  # the peer, not the claim
        assert sent["headers"]["x-forwarded-proto"] == "http", path


@pytest.fixture
def one_failing_web(tmp_path):
    """nginx in front of two web upstreams, one of which answers every request with 502."""
    failing, good = Upstream(502).start(), Upstream(200).start()
    url, process = start_nginx(tmp_path / "nginx", [failing.address, good.address])
    yield url, failing, good
    stop_process(process, signal.SIGTERM)
    failing.stop()
    good.stop()


def methods(upstream: Upstream, method: str) -> int:
    return sum(1 for request in upstream.requests if request["method"] == method)


def test_an_idempotent_request_is_retried_on_the_other_upstream(one_failing_web):
    url, failing, good = one_failing_web
    statuses = [httpx.get(f"{url}/api/jobs/{n}/").status_code for n in range(6)]
    assert statuses == [200] * 6
    assert methods(failing, "GET") >= 1, "round robin never tried the failing upstream"
    assert methods(good, "GET") == 6  # every GET the failing one got was retried here


def test_a_post_is_never_retried_on_a_second_upstream(one_failing_web):
    url, failing, good = one_failing_web
    statuses = [httpx.post(f"{url}/api/jobs/", json={"kind": "demo.count", "n": n}).status_code for n in range(6)]
    assert methods(failing, "POST") >= 1, "round robin never tried the failing upstream"
    # Each POST reached exactly one upstream: the failing one's 502 went back to the client.
    assert methods(failing, "POST") + methods(good, "POST") == 6
    assert statuses.count(502) == methods(failing, "POST") and statuses.count(200) == methods(good, "POST")


# --- nginx's own errors are the contract's JSON ----------------------------------------------

# Every status the issue names that nginx may answer itself, and what the client then gets.
NGINX_ERRORS = {400: 400, 404: 404, 405: 405, 408: 408, 413: 413, 414: 414, 429: 429, 494: 431, 500: 500,
                502: 502, 503: 503, 504: 504}


def test_every_error_nginx_answers_has_a_json_page():
    template = (REPO / "deploy" / "nginx" / "jobcast.conf.template").read_text()
    pages = {code: (int(status), uri) for code, status, uri in re.findall(r"error_page (\d+) =(\d+) (\S+);", template)}
    for code, answered in NGINX_ERRORS.items():
        status, uri = pages.get(str(code), (None, None))
        assert status == answered, f"error_page for {code}: {pages.get(str(code))}"
        block = re.search(rf"location = {re.escape(uri)} \{{(.*?)\}}", template, flags=re.DOTALL).group(1)
        assert "internal;" in block and "default_type application/json;" in block, block
        assert f"return {answered} '{{\"detail\": " in block, block


@pytest.fixture
def edge_without_tiers(tmp_path):
    """nginx whose web and ws upstreams are ports nothing listens on (tiers down or restarting)."""
    url, process = start_nginx(tmp_path / "nginx", [f"127.0.0.1:{free_port()}"], ws=[f"127.0.0.1:{free_port()}"])
    yield url
    stop_process(process, signal.SIGTERM)


def raw_request(url: str, data: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are (no client library would send a broken request) and read the answer."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_json_error(status: int, headers, body: bytes, expected: int) -> dict:
    assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    payload = json.loads(body)
    assert set(payload) == {"detail", "errors"} and payload["detail"] and payload["errors"] == []
    return payload


def test_a_uri_too_long_is_json_414(edge_without_tiers):
    response = httpx.get(f"{edge_without_tiers}/api/jobs/{'a' * 10_000}/")
    assert_json_error(response.status_code, response.headers, response.content, 414)


def test_a_header_too_large_is_json_431(edge_without_tiers):
    response = httpx.get(f"{edge_without_tiers}/api/jobs/", headers={"X-Big": "x" * 20_000})
    assert_json_error(response.status_code, response.headers, response.content, 431)


def test_a_malformed_request_is_json_400(edge_without_tiers):
    status, headers, body = raw_request(edge_without_tiers, b"GET /api/jobs/ HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    assert_json_error(status, headers, body, 400)


def test_a_missing_static_file_and_a_wrong_method_are_json(edge_without_tiers):
    missing = httpx.get(f"{edge_without_tiers}/static/nope.css")
    assert_json_error(missing.status_code, missing.headers, missing.content, 404)
    post = httpx.post(f"{edge_without_tiers}/static/app.css", content=b"x")
    assert_json_error(post.status_code, post.headers, post.content, 405)


def test_a_web_tier_that_is_down_is_json_502(edge_without_tiers):
    response = httpx.post(f"{edge_without_tiers}/api/jobs/", json={"kind": "demo.count"})
    assert_json_error(response.status_code, response.headers, response.content, 502)
    assert SECURITY_HEADERS.items() <= response.headers.items()


def test_a_websocket_handshake_while_the_ws_tier_restarts_is_json_503_with_retry_after(edge_without_tiers):
    handshake = (b"GET /ws/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n")
    status, headers, body = raw_request(edge_without_tiers, handshake)
    assert_json_error(status, headers, body, 503)
    assert headers["retry-after"] == "2"
    assert headers["x-frame-options"] == "DENY"
