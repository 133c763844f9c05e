"""Security on the running stack (nginx, gunicorn, uvicorn, real sessions and cookies): CSRF for
session writes and not for Bearer tokens, the Origin check of cookie sockets while token and ticket
sockets work from any origin, single-use tickets, the security headers of the web tier itself, and
credentials kept out of error bodies and the database (docs/reliability.md, "Hostile input and security")."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import httpx
import orjson
import pytest
import redis
import websockets

from tests.support import stream_to_the_end

pytestmark = [pytest.mark.e2e]

USER = "guarded"
FOREIGN_ORIGIN = "https://evil.example"
HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}


@pytest.fixture(scope="module")
def browser(live_stack):
    """USER's logged-in browser session (cookie jar with sessionid and csrftoken)."""
    client = live_stack.browser(USER)
    yield client
    client.close()


@pytest.fixture(scope="module")
def job(live_stack):
    """A job of USER that runs for the whole module, cancelled afterwards."""
    with live_stack.running_job(USER) as running:
        yield running


def assert_json_error(response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json") and set(response.json()) == {"detail", "errors"}


def first_frame(url: str, headers: dict | None = None) -> tuple[list[dict], int | None]:
    """The socket's first message (then closed by us), or no message and the server's close code."""
    async def run():
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            try:
                return [orjson.loads(await asyncio.wait_for(ws.recv(), 10))], None
            except websockets.ConnectionClosed:
                return [], ws.close_code

    return asyncio.run(run())


def test_session_writes_need_the_csrf_token_and_bearer_writes_do_not(live_stack, browser):
    body = {"kind": "demo.count", "params": {"steps": 1}}
    csrf = browser.cookies["csrftoken"]
    origin = {"Origin": live_stack.url}
    assert_json_error(browser.post("/api/jobs/", json=body, headers=origin), 403)
    assert_json_error(browser.post("/api/jobs/", json=body, headers={**origin, "X-CSRFToken": "x" * 32}), 403)
    assert_json_error(browser.post("/api/ws-tickets/", headers=origin), 403)
    # The right token from a foreign page is refused too: Django checks the Origin.
    assert_json_error(browser.post("/api/jobs/", json=body, headers={"Origin": FOREIGN_ORIGIN, "X-CSRFToken": csrf}), 403)
    assert browser.post("/api/jobs/", json=body, headers={**origin, "X-CSRFToken": csrf}).status_code == 201
    assert browser.get("/api/jobs/").status_code == 200  # reads need none
    with live_stack.client(USER) as bearer:
        assert bearer.post("/api/jobs/", json=body, headers={"Origin": FOREIGN_ORIGIN}).status_code == 201
        assert bearer.post("/api/ws-tickets/").status_code == 201


def test_cookie_sockets_need_an_allowed_origin_token_and_ticket_sockets_work_from_any(live_stack, browser, job):
    url = f"{live_stack.ws_url}/ws/jobs/{job['id']}/"
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid']}"}
    assert first_frame(url, {**cookie, "Origin": live_stack.url})[0][0]["type"] == "snapshot"
    for origin in (FOREIGN_ORIGIN, "null", "http://127.0.0.1.evil.example"):
        assert first_frame(url, {**cookie, "Origin": origin}) == ([], 4401), origin
    assert first_frame(url, cookie) == ([], 4401)  # no Origin at all
    bearer = {"Authorization": f"Bearer {live_stack.token(USER)}"}
    assert first_frame(url, {**bearer, "Origin": FOREIGN_ORIGIN})[0][0]["type"] == "snapshot"
    with live_stack.client(USER) as client:
        ticket = client.post("/api/ws-tickets/").json()["ticket"]
    assert first_frame(f"{url}?ticket={ticket}", {"Origin": FOREIGN_ORIGIN})[0][0]["type"] == "snapshot"
    assert first_frame(f"{url}?ticket={ticket}", {"Origin": live_stack.url}) == ([], 4401)  # used once already


def test_the_web_tier_itself_sends_the_security_headers(live_stack, browser):
    """nginx sets them at the edge (tests/e2e/test_nginx.py); gunicorn's answers have them too, for
    the uvicorn front door and a tier reached directly."""
    direct = f"http://127.0.0.1:{live_stack.web_port}"
    bearer = {"Authorization": f"Bearer {live_stack.token(USER)}"}
    answers = [httpx.get(f"{direct}/api/jobs/", headers=bearer), httpx.get(f"{direct}/api/jobs/"),
               httpx.get(f"{direct}/nothing-here/"), httpx.get(f"{direct}/accounts/login/")]
    assert [a.status_code for a in answers] == [200, 401, 404, 200]
    for answer in answers:
        assert HEADERS.items() <= answer.headers.items(), (answer.url, dict(answer.headers))
        assert "strict-transport-security" not in answer.headers  # plain HTTP
    # Over TLS (as a trusted proxy says: the stack trusts 127.0.0.1), HSTS for a year.
    over_tls = httpx.get(f"{direct}/api/jobs/", headers={**bearer, "X-Forwarded-Proto": "https"})
    assert over_tls.headers["strict-transport-security"] == "max-age=31536000"


def test_error_bodies_echo_no_credential(live_stack):
    token = live_stack.token(USER)
    wrong = token[:-4] + "AAAA"
    direct = f"http://127.0.0.1:{live_stack.web_port}"
    answers = [
        httpx.get(f"{live_stack.url}/api/jobs/", headers={"Authorization": f"Bearer {wrong}"}),
        httpx.get(f"{direct}/api/jobs/{token}/", headers={"Authorization": f"Bearer {token}"}),  # a token in a URL
        httpx.get(f"{live_stack.url}/api/jobs/?cursor={token}", headers={"Authorization": f"Bearer {token}"}),
        httpx.post(f"{live_stack.url}/api/jobs/", content=f'{{"kind": {token!r}}}',
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}),
    ]
    assert [a.status_code for a in answers] == [401, 404, 400, 400]
    secret_key = (live_stack.data_dir / "secret_key").read_text().strip()
    for answer in answers:
        assert token.removeprefix("jc_")[:20] not in answer.text and wrong[3:23] not in answer.text, answer.text
        assert secret_key not in answer.text


def test_the_database_holds_no_raw_token_and_redis_no_raw_ticket(live_stack, job):
    """Tokens are stored as SHA-256 hashes, tickets as hashed keys: the stack's SQLite file (and its
    write-ahead log) and every Redis key and value are searched for the raw values."""
    token = live_stack.token(USER)
    with live_stack.client(USER) as client:
        ticket = client.post("/api/ws-tickets/").json()["ticket"]  # left unused: still in Redis
        assert client.get("/api/jobs/").status_code == 200
    database = live_stack.data_dir / "db.sqlite3"
    if not database.exists():
        pytest.skip("the stack runs on PostgreSQL: tests/integration/test_security.py scans its tables")
    stored = b"".join(path.read_bytes() for path in database.parent.glob("db.sqlite3*"))
    secret = token.removeprefix("jc_")
    assert secret.encode() not in stored and secret[8:].encode() not in stored
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        (table,) = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%apitoken'").fetchone()
        (hashes,) = db.execute(f"SELECT count(*) FROM {table} WHERE length(key_hash) = 64").fetchone()
    assert hashes >= 1
    port = re.search(r"local Redis on 127\.0\.0\.1:(\d+)", (live_stack.data_dir / "stack.log").read_text())
    assert port, "the stack's log names its Redis"
    client = redis.Redis(port=int(port.group(1)))
    dumped = b"".join(key + (client.dump(key) or b"") for key in client.scan_iter(count=1000))
    assert ticket.encode() not in dumped and secret.encode() not in dumped
    assert any(key.startswith(b"jobcast:ticket:") for key in client.scan_iter(match="jobcast:ticket:*"))


def test_a_ticket_opens_one_socket_once(live_stack, job):
    with live_stack.client(USER) as client:
        ticket = client.post("/api/ws-tickets/").json()["ticket"]
    url = f"{live_stack.ws_url}/ws/jobs/{job['id']}/?ticket={ticket}"
    assert first_frame(url)[0][0]["type"] == "snapshot"
    assert asyncio.run(stream_to_the_end(url)) == ([], 4401)
