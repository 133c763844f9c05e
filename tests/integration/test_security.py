"""Credentials at rest and in failures: tickets expire, the database keeps no raw token (every table
searched, on SQLite and PostgreSQL), and a 500 caused by an error that carries the token and the
SECRET_KEY shows neither in its body nor in its log line (docs/reliability.md, "Hostile input and security")."""

from __future__ import annotations

import io
import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from jobcast.accounts.services import ticket_create, token_create
from jobcast.logs import ContextFilter, JsonLineFormatter, TextFormatter
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


async def test_a_ticket_past_its_ttl_is_refused_with_4401(user, redis, settings):
    from jobcast.ws.asgi import application

    settings.JOBCAST = {**settings.JOBCAST, "TICKET_TTL": 1}
    ticket, expires_in = await database_sync_to_async(ticket_create)(user)
    assert expires_in == 1
    # Redis forgets it by itself (its key's TTL): nothing of jobcast's has to run.
    await database_sync_to_async(wait_until)(lambda: not redis.keys("jobcast:ticket:*"), 5, "the ticket to expire")
    ws = WebsocketCommunicator(application, f"/ws/jobs/?ticket={ticket}")
    assert (await ws.connect(timeout=10))[0]
    close = await ws.receive_output(timeout=5)
    assert (close["type"], close["code"]) == ("websocket.close", 4401)
    await ws.disconnect()


def every_stored_value() -> str:
    """Every row of every table of the test database, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.extend(map(repr, cursor.fetchall()))
    return "\n".join(rows)


def test_no_table_holds_a_raw_token(user):
    raw = token_create(user.username)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.post("/api/jobs/", {"kind": "demo.count"}, content_type="application/json").status_code == 201
    assert client.post("/api/ws-tickets/").status_code == 201
    stored = every_stored_value()
    secret = raw.removeprefix("jc_")
    assert secret[:8] in stored  # the listed prefix, so the search does see the token table
    assert secret not in stored and secret[8:] not in stored


@pytest.fixture
def captured_lines():
    """Log lines as both of jobcast's formatters write them (each redacts credentials)."""
    streams = {name: io.StringIO() for name in ("json", "text")}
    handlers = []
    for name, formatter in (("json", JsonLineFormatter()), ("text", TextFormatter())):
        handler = logging.StreamHandler(streams[name])
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        handlers.append(handler)
        logging.getLogger().addHandler(handler)
    yield streams
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


def test_a_500_carrying_the_token_and_secret_key_shows_neither(user, monkeypatch, captured_lines):
    raw = token_create(user.username)
    assert len(django_settings.SECRET_KEY) >= 16

    def explode(*args, **kwargs):
        raise RuntimeError(f"lookup failed for {raw} with key {django_settings.SECRET_KEY}")

    monkeypatch.setattr("jobcast.web.api.job_list_for_user", explode)
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/jobs/")
    assert response.status_code == 500 and response.json() == {"detail": "Internal server error.", "errors": []}
    secret = raw.removeprefix("jc_")
    for name, stream in captured_lines.items():
        text = stream.getvalue()
        assert "RuntimeError: lookup failed for jc_[redacted]" in text, (name, text)  # the traceback is logged
        assert secret not in text and django_settings.SECRET_KEY not in text, name
