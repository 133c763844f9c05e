"""API tokens: stored hashed, listed without their value, expiring and revocable — also for open sockets."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from click.testing import CliRunner
from django.test import Client
from django.utils import timezone

from jobcast.accounts.models import ApiToken
from jobcast.accounts.services import token_create, token_revoke
from jobcast.cli.main import cli

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def client_with(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_tokens_are_stored_hashed_and_listed_by_prefix_only(user):
    raw = token_create(user.username)
    stored = ApiToken.objects.get(user=user)
    assert raw not in repr(list(ApiToken.objects.values()))  # nothing stored reveals the token
    assert stored.key_hash != raw and len(stored.key_hash) == 64 and raw.startswith(f"jc_{stored.prefix}")
    listing = CliRunner().invoke(cli, ["token", "--list", "--json"])
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.stdout)
    assert row["prefix"] == f"jc_{stored.prefix}…" and row["state"] == "usable" and raw not in listing.stdout


def test_an_expired_token_and_a_revoked_one_are_refused(user):
    expiring = token_create(user.username, expires_at=timezone.now() + timedelta(seconds=60))
    assert client_with(expiring).get("/api/jobs/").status_code == 200
    ApiToken.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(expiring).get("/api/jobs/").status_code == 401
    kept = token_create(user.username)
    assert client_with(kept).get("/api/jobs/").status_code == 200
    token_revoke(kept[:11])  # by its prefix, as listed
    response = client_with(kept).get("/api/jobs/")
    assert response.status_code == 401 and response.json()["detail"].startswith("Authentication required")


def test_the_token_command_creates_expiring_tokens_and_revokes_by_id(user):
    runner = CliRunner()
    created = runner.invoke(cli, ["token", user.username, "--expires", "2h"])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip()
    token = ApiToken.objects.get(user=user)
    assert timedelta(minutes=119) < token.expires_at - timezone.now() <= timedelta(hours=2)
    assert client_with(raw).get("/api/jobs/").status_code == 200
    revoked = runner.invoke(cli, ["token", "--revoke", str(token.id), "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["state"] == "revoked"
    assert client_with(raw).get("/api/jobs/").status_code == 401
    assert runner.invoke(cli, ["token", "--revoke", "nosuchtoken"]).exit_code == 1
    bad = runner.invoke(cli, ["token", user.username, "--expires", "soon"])
    assert bad.exit_code == 2 and "30d, 12h, 90m" in bad.output


def test_active_jobs_per_user_are_limited(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "MAX_ACTIVE_JOBS_PER_USER": 2}
    body = {"kind": "demo.count", "params": {}}
    assert [api_client.post("/api/jobs/", body, content_type="application/json").status_code for _ in range(2)] == [201, 201]
    over = api_client.post("/api/jobs/", body, content_type="application/json")
    assert over.status_code == 429 and over["Retry-After"] and "at most 2" in over.json()["detail"]


async def connect_with(path: str, headers=()) -> WebsocketCommunicator:
    from jobcast.ws.asgi import application

    ws = WebsocketCommunicator(application, path, headers=list(headers))
    assert (await ws.connect(timeout=10))[0]
    return ws


async def test_revoking_a_token_closes_its_open_sockets_within_the_recheck_bound(user, settings):
    settings.JOBCAST = {**settings.JOBCAST, "WS_TOKEN_RECHECK_SECONDS": 0.3, "WS_RESYNC_SECONDS": 0.1}
    raw = await database_sync_to_async(token_create)(user.username)
    other = await database_sync_to_async(token_create)(user.username)
    revoked = await connect_with("/ws/jobs/", [(b"authorization", f"Bearer {raw}".encode())])
    kept = await connect_with("/ws/jobs/", [(b"authorization", f"Bearer {other}".encode())])
    await database_sync_to_async(token_revoke)(raw[:11])
    close = await revoked.receive_output(timeout=5)
    assert (close["type"], close["code"]) == ("websocket.close", 4401)
    assert await kept.receive_nothing(timeout=0.8)  # its token is still good
    await revoked.disconnect()
    await kept.disconnect()


async def test_a_ticket_asked_for_with_a_revoked_token_admits_nobody(user):
    raw = await database_sync_to_async(token_create)(user.username)
    response = await database_sync_to_async(client_with(raw).post)("/api/ws-tickets/")
    ticket = response.json()["ticket"]
    await database_sync_to_async(token_revoke)(raw)
    ws = await connect_with(f"/ws/jobs/?ticket={ticket}")
    close = await ws.receive_output(timeout=5)
    assert (close["type"], close["code"]) == ("websocket.close", 4401)
    await ws.disconnect()
