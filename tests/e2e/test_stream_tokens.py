"""jobcast beside a product, standalone (`jobcast run`, nginx in front): the product's backend submits
with a service token on a user's behalf, and the user's browser opens the stream with a token the
product signed. Each bad token is refused with the contract's close code."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest

from tests.e2e.conftest import STREAM_TOKEN_SECRET
from tests.support import stream_to_the_end

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def signed(sub: str, *, key: str = STREAM_TOKEN_SECRET, lifetime: int = 60, **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "aud": "jobcast", "iat": now, "exp": now + lifetime, **claims}, key, algorithm="HS256")


def test_the_product_submits_for_its_user_and_the_users_browser_watches_with_a_signed_token(live_stack):
    service = live_stack.jobcast("token", "shop-backend", "--create-user", "--service")
    assert service.returncode == 0, service.stderr
    backend = httpx.Client(base_url=live_stack.url, headers={"Authorization": f"Bearer {service.stdout.strip()}"}, timeout=30)
    body = {"kind": "demo.count", "params": {"steps": 20, "interval_ms": 20, "log_every": 5}}
    made = backend.post("/api/jobs/", json=body, headers={"Jobcast-Subject": "user-42"})
    assert made.status_code == 201, made.text
    job = made.json()
    other = backend.post("/api/jobs/", json=body, headers={"Jobcast-Subject": "user-43"}).json()
    # The service credential does nothing else.
    assert backend.get("/api/jobs/").status_code == 403
    assert backend.post("/api/ws-tickets/").status_code == 403

    base = f"{live_stack.ws_url}/ws/jobs/{job['id']}/?after=0&token="
    messages, code = asyncio.run(stream_to_the_end(base + signed("user-42", jobs=[job["id"]])))
    assert code == 1000, messages
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[0]["state"] == "running" and messages[-1]["state"] == "succeeded"
    assert messages[-1]["result"] == {"counted": 20}

    refusals = {
        "expired": signed("user-42", lifetime=-60),
        "wrong signature": signed("user-42", key="not-the-shared-secret-at-all-0123456789abcdef"),
        "wrong audience": signed("user-42", aud="another-service"),
    }
    for case, token in refusals.items():
        assert asyncio.run(stream_to_the_end(base + token)) == ([], 4401), case
    # Another user's job, by the other user's token and by one naming only another job: 4404.
    assert asyncio.run(stream_to_the_end(f"{live_stack.ws_url}/ws/jobs/{other['id']}/?token={signed('user-42')}")) == ([], 4404)
    assert asyncio.run(stream_to_the_end(base + signed("user-42", jobs=[other["id"]]))) == ([], 4404)
    # The service token opens no socket.
    assert asyncio.run(stream_to_the_end(base.removesuffix("&token="), {"Authorization": backend.headers["Authorization"]})) == ([], 4401)
