"""Chunked request bodies (no Content-Length) sent to the real gunicorn and through nginx:
read when within JOBCAST_MAX_BODY_BYTES (1 MiB here), the contract's JSON 413 when over."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from tests.support import wait_until

pytestmark = [pytest.mark.e2e]

LIMIT = 1_048_576  # the stack runs with the default JOBCAST_MAX_BODY_BYTES


def chunked_post(port: int, token: str, pieces) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST", "/api/jobs/", body=iter(pieces), encode_chunked=True,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Host": "127.0.0.1"},
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def oversized():
    yield b'{"kind": "demo.count", "params": {"steps": 1}, "pad": "'
    for _ in range(LIMIT // 65536 + 1):
        yield b"x" * 65536
    yield b'"}'


@pytest.fixture(scope="module")
def ports(live_stack):
    return {"gunicorn": live_stack.web_port, "nginx": urlsplit(live_stack.url).port}


@pytest.mark.parametrize("door", ["gunicorn", "nginx"])
def test_a_chunked_submit_is_read(live_stack, ports, door):
    body = json.dumps({"kind": "demo.count", "params": {"steps": 1}}).encode()
    status, content_type, content = chunked_post(ports[door], live_stack.token("e2e-chunked"), [body[:10], body[10:]])
    assert status == 201, content
    job = json.loads(content)
    assert job["params"]["steps"] == 1
    # Let the worker finish it, so no job is in flight when the stack stops.
    with live_stack.client("e2e-chunked") as client:
        wait_until(lambda: client.get(f"/api/jobs/{job['id']}/").json()["state"] == "succeeded", 30, "the job to succeed")


@pytest.mark.parametrize("door", ["gunicorn", "nginx"])
def test_an_oversized_chunked_body_is_a_json_413(live_stack, ports, door):
    status, content_type, content = chunked_post(ports[door], live_stack.token("e2e-chunked"), oversized())
    assert status == 413, content[:300]
    assert content_type.startswith("application/json")
    body = json.loads(content)
    assert set(body) == {"detail", "errors"} and "too large" in body["detail"].lower()
