"""Browser login: /accounts/login/ and /accounts/logout/ (Django's views) give and end the
session that /api/ (CSRF on writes) and the ws handshake (allowed Origin) accept.

Every login here is a real POST of the login form with the CSRF token the form carried,
as a browser sends it; nothing uses force_login.
"""

from __future__ import annotations

import json
import re

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from jobcast.jobs.models import Job
from jobcast.ws.asgi import application
from jobcast.ws.limits import connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

PASSWORD = "alice-password"  # the `user` fixture's
TIMEOUT = 5


def form_csrf_token(page: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def log_in(username: str = "alice", password: str = PASSWORD, next_url: str | None = None):
    """A browser-like client that loads the login form and posts it; returns (client, response)."""
    client = Client(enforce_csrf_checks=True)
    form = client.get("/accounts/login/" + (f"?next={next_url}" if next_url else ""))
    assert form.status_code == 200 and form["Content-Type"].startswith("text/html")
    data = {"username": username, "password": password, "csrfmiddlewaretoken": form_csrf_token(form.content)}
    if next_url:
        data["next"] = next_url
    return client, client.post("/accounts/login/", data)


def csrf_header(client: Client) -> dict:
    """What a page's script sends on a write: the csrftoken cookie's value as X-CSRFToken."""
    return {"X-CSRFToken": client.cookies[django_settings.CSRF_COOKIE_NAME].value}


def submit(client: Client, **headers):
    body = json.dumps({"kind": "demo.count", "params": {"steps": 2}})
    return client.post("/api/jobs/", data=body, content_type="application/json", headers=headers)


# --- HTTP -------------------------------------------------------------------------------------

def test_the_login_page_is_a_form_with_a_csrf_token(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<form method="post" action="/accounts/login/">' in page
    assert 'name="username"' in page and 'name="password"' in page and form_csrf_token(response.content)


def test_logging_in_gives_a_session_that_works_on_the_api(user):
    client, response = log_in()
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.cookies[django_settings.SESSION_COOKIE_NAME].value

    assert client.get("/api/jobs/").status_code == 200
    created = submit(client, **csrf_header(client))
    assert created.status_code == 201, created.content
    assert Job.objects.get(id=created.json()["id"]).owner == user
    assert client.get("/api/jobs/").json()["items"][0]["id"] == created.json()["id"]
    # A write without the CSRF header is refused, as for any session.
    refused = submit(client)
    assert refused.status_code == 403 and refused["Content-Type"].startswith("application/json")


def test_a_wrong_password_gives_no_session(user):
    client, response = log_in(password="wrong")
    assert response.status_code == 200  # the form again, with its error
    assert "Please enter a correct username and password" in response.content.decode()
    assert django_settings.SESSION_COOKIE_NAME not in client.cookies
    assert client.get("/api/jobs/").status_code == 401


def test_a_login_post_without_its_csrf_token_is_403_json(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403 and response.json()["detail"].startswith("CSRF check failed")
    assert client.get("/api/jobs/").status_code == 401


@pytest.mark.parametrize("next_url, location", [
    ("/api/jobs/", "/api/jobs/"),
    ("https://evil.example/steal", "/"),
    ("//evil.example/steal", "/"),
    ("javascript:alert(1)", "/"),
])
def test_next_redirects_only_within_the_site(user, next_url, location):
    _, response = log_in(next_url=next_url)
    assert response.status_code == 302 and response["Location"] == location


def test_the_login_page_sends_a_logged_in_browser_on(user):
    client, _ = log_in()
    assert client.get("/accounts/login/").status_code == 302


def test_logging_out_ends_the_session(user):
    client, _ = log_in()
    assert client.get("/accounts/logout/").status_code == 405  # only a POST logs out (CSRF-protected)
    assert client.post("/accounts/logout/").status_code == 403  # without the CSRF token
    assert client.get("/api/jobs/").status_code == 200
    response = client.post("/accounts/logout/", headers=csrf_header(client))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/api/jobs/").status_code == 401


# --- the ws tier --------------------------------------------------------------------------------

def session_cookie(client: Client) -> bytes:
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def connect(path: str, headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected  # refusals are accepted, then closed with their code
    return communicator


async def first_message(communicator) -> dict:
    message = await communicator.receive_output(timeout=TIMEOUT)
    if message["type"] == "websocket.close":
        return {"type": "close", "code": message.get("code", 1000)}
    return orjson.loads(message["text"])


async def test_the_login_session_opens_a_job_stream_from_an_allowed_origin(user):
    client, response = await database_sync_to_async(log_in)()
    assert response.status_code == 302
    created = await database_sync_to_async(submit)(client, **csrf_header(client))
    job_id = created.json()["id"]
    cookie = session_cookie(client)

    ws = await connect(f"/ws/jobs/{job_id}/", [(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
    snapshot = await first_message(ws)
    assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == job_id
    await ws.disconnect()

    ws = await connect("/ws/jobs/", [(b"cookie", cookie), (b"origin", b"http://localhost:8000")])
    assert (await first_message(ws))["job"]["id"] == job_id
    await ws.disconnect()

    # The same cookie from another site's page is refused.
    ws = await connect(f"/ws/jobs/{job_id}/", [(b"cookie", cookie), (b"origin", b"http://evil.example")])
    assert await first_message(ws) == {"type": "close", "code": 4401}
    await ws.disconnect()

    # After logging out the cookie is worthless on the ws tier too.
    await database_sync_to_async(client.post)("/accounts/logout/", headers=csrf_header(client))
    ws = await connect(f"/ws/jobs/{job_id}/", [(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
    assert await first_message(ws) == {"type": "close", "code": 4401}
    await ws.disconnect()
    assert connections.total == 0
