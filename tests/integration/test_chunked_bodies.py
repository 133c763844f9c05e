"""Bodies without a Content-Length (`Transfer-Encoding: chunked`): read like any other body,
and refused with the contract's JSON 413 when over JOBCAST_MAX_BODY_BYTES.

Under WSGI (the web tier, gunicorn) through jobcast.web.wsgi's application, given the
environ gunicorn builds for a chunked request; under ASGI (`jobcast run`'s uvicorn front
door) through Django's ASGI handler. tests/e2e/test_chunked_bodies.py sends real chunked
requests to gunicorn and nginx.
"""

from __future__ import annotations

import asyncio
import io
import json

import orjson
import pytest

from jobcast.jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

LIMIT = 4096


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.JOBCAST = {**settings.JOBCAST, "MAX_BODY_BYTES": LIMIT}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT


def submit_body(size: int) -> bytes:
    """A submit body of exactly `size` bytes (the padding is an unknown param, so a 400 if read)."""
    head = b'{"kind": "demo.count", "params": {"steps": 2}, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def call_wsgi(body: bytes, token: str) -> tuple[int, dict, bytes]:
    """One request as gunicorn hands a chunked one to the app: no CONTENT_LENGTH, an input
    stream that ends with the body."""
    from jobcast.web.wsgi import application

    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/jobs/", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8001", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = int(status.split()[0]), dict(headers)

    content = b"".join(application(environ, start_response))
    return started["status"], started["headers"], content


def test_a_chunked_body_within_the_limit_is_read(token):
    body = json.dumps({"kind": "demo.count", "params": {"steps": 2}}).encode()
    status, headers, content = call_wsgi(body, token)
    assert status == 201, content
    assert Job.objects.get(id=orjson.loads(content)["id"]).params["steps"] == 2


def test_a_chunked_body_over_the_limit_is_a_json_413_under_wsgi(token):
    status, headers, content = call_wsgi(submit_body(LIMIT + 1), token)
    assert status == 413, content
    assert headers["Content-Type"].startswith("application/json")
    body = orjson.loads(content)
    assert set(body) == {"detail", "errors"} and "too large" in body["detail"]
    assert not Job.objects.exists()


def test_a_chunked_body_of_exactly_the_limit_is_read_not_refused(token):
    # The padding makes it a 400 (unknown field): it was read whole, not cut or refused.
    status, headers, content = call_wsgi(submit_body(LIMIT), token)
    assert status == 400, content
    assert orjson.loads(content)["errors"][0]["loc"] == ["body", "pad"]


async def call_asgi(body: bytes, token: str, piece: int = 1000) -> tuple[int, dict, bytes]:
    """One request without content-length through Django's ASGI handler, the body in pieces."""
    from django.core.asgi import get_asgi_application

    app = get_asgi_application()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/jobs/", "raw_path": b"/api/jobs/", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected (a disconnect cancels the view)

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content


async def test_a_chunked_body_over_the_limit_is_a_json_413_under_asgi(token):
    status, headers, content = await call_asgi(submit_body(LIMIT + 1), token)
    assert status == 413, content
    assert headers["Content-Type"].startswith("application/json")
    assert set(orjson.loads(content)) == {"detail", "errors"}


async def test_a_chunked_body_within_the_limit_is_read_under_asgi(token):
    status, _, content = await call_asgi(json.dumps({"kind": "demo.count", "params": {"steps": 2}}).encode(), token)
    assert status == 201, content
