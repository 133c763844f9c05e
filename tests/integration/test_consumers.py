"""The WebSocket consumers (in-process, Channels' WebsocketCommunicator) on real Redis and the database."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import Client

from jobcast.accounts.services import ticket_create, token_create
from jobcast.events.publisher import publish_event
from jobcast.events.schema import LogEvent, ProgressEvent, StateEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_submit, job_transition
from jobcast.ws.asgi import application
from jobcast.ws.limits import connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

TIMEOUT = 5


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def make_job(user, state="queued") -> Job:
    job = await database_sync_to_async(Job.objects.create)(owner=user, kind="demo.count", params={"steps": 10})
    if state != "queued":
        assert await database_sync_to_async(job_transition)(job.id, "running")
        if state != "running":
            assert await database_sync_to_async(job_transition)(job.id, state)
    return job


def progress(job, n):
    return ProgressEvent(job_id=str(job.id), ts=time.time(), current=n, total=100)


async def publish(job, event, terminal=False):
    return await asyncio.to_thread(publish_event, event, job.owner_id, terminal=terminal)


async def publish_progress(job, count: int):
    for n in range(count):
        await publish(job, progress(job, n))


async def connect(path, headers):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def receive(communicator):
    message = await communicator.receive_output(timeout=TIMEOUT)
    if message["type"] == "websocket.close":
        return message
    return orjson.loads(message["text"])


async def closed_with(communicator) -> int:
    """The code the server closed with (then the client side disconnects, as a real client does)."""
    message = await communicator.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return message.get("code", 1000)


async def events_until_close(communicator) -> tuple[list[dict], int]:
    messages = []
    while True:
        message = await receive(communicator)
        if message["type"] == "websocket.close":
            await communicator.disconnect()
            return messages, message.get("code", 1000)
        messages.append(message)


@pytest.fixture
def token(user):
    return token_create(user.username)


# --- /ws/jobs/{id}/ -----------------------------------------------------------------------

async def test_snapshot_then_live_events_then_close_1000(user, token):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    latency_before = sample("jobcast_event_latency_seconds_count")
    sent_before = sample("jobcast_ws_messages_sent_total", type="progress")
    job = await make_job(user, "running")
    await publish(job, StateEvent(job_id=str(job.id), ts=time.time(), state="running"))
    await publish_progress(job, 3)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is False
    assert snapshot["job"]["seq"] == 4 and snapshot["job"]["state"] == "running"
    assert snapshot["job"]["progress"]["current"] == 2
    await publish_progress(job, 2)
    await database_sync_to_async(job_transition)(job.id, "succeeded", result={"ok": True})
    await publish(job, StateEvent(job_id=str(job.id), ts=time.time(), state="succeeded", result={"ok": True}), terminal=True)
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [5, 6, 7]
    assert messages[-1]["state"] == "succeeded" and messages[-1]["result"] == {"ok": True}
    assert code == 1000
    assert sample("jobcast_event_latency_seconds_count") == latency_before + 3
    assert sample("jobcast_ws_messages_sent_total", type="progress") == sent_before + 2
    assert sample("jobcast_ws_connections") == 0


def publish_in_thread(job, count: int) -> threading.Thread:
    def run():
        for n in range(count):
            publish_event(progress(job, n), job.owner_id)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("after", [None, 0, 20])
async def test_connecting_while_events_are_published_misses_and_repeats_nothing(user, token, after):
    job = await make_job(user, "running")
    await publish_progress(job, 25)
    thread = publish_in_thread(job, 200)
    path = f"/ws/jobs/{job.id}/" + ("" if after is None else f"?after={after}")
    ws = await connect(path, bearer(token))
    first = after
    seqs = []
    while not seqs or seqs[-1] < 225:
        message = await receive(ws)
        if message["type"] == "snapshot":
            first = message["job"]["seq"]
            continue
        seqs.append(message["seq"])
    await asyncio.to_thread(thread.join)
    assert seqs == list(range(first + 1, 226))
    await ws.disconnect()


async def test_after_replays_history_then_goes_live(user, token):
    job = await make_job(user, "running")
    await publish_progress(job, 5)
    ws = await connect(f"/ws/jobs/{job.id}/?after=2", bearer(token))
    assert [(await receive(ws))["seq"] for _ in range(3)] == [3, 4, 5]
    await publish(job, LogEvent(job_id=str(job.id), ts=time.time(), message="live"))
    live = await receive(ws)
    assert live["seq"] == 6 and live["type"] == "log" and live["message"] == "live"
    await ws.disconnect()


async def test_after_beyond_trimmed_history_gets_a_reset_snapshot(user, token, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job = await make_job(user, "running")
    await publish_progress(job, 10)
    ws = await connect(f"/ws/jobs/{job.id}/?after=2", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is True and snapshot["job"]["seq"] == 10
    await publish(job, progress(job, 99))
    assert (await receive(ws))["seq"] == 11
    await ws.disconnect()


async def test_a_finished_job_sends_its_snapshot_or_remaining_history_then_closes(user, token):
    job = await make_job(user, "running")
    await publish_progress(job, 2)
    await database_sync_to_async(job_transition)(job.id, "failed", error={"type": "X", "message": "y"})
    await publish(job, StateEvent(job_id=str(job.id), ts=time.time(), state="failed", error={"type": "X", "message": "y"}), terminal=True)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["job"]["state"] == "failed" and snapshot["job"]["error"] == {"type": "X", "message": "y"}
    assert await closed_with(ws) == 1000
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [1, 2, 3] and code == 1000
    ws = await connect(f"/ws/jobs/{job.id}/?after=3", bearer(token))
    assert await closed_with(ws) == 1000


async def test_a_gap_from_a_full_channel_queue_is_repaired_from_history(user, token, settings):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await asyncio.sleep(0.2)  # the consumer has joined its group
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = 2
    try:
        results = [await publish(job, progress(job, n)) for n in range(6)]
        assert sum(r.dropped for r in results) > 0  # the channel queue overflowed
    finally:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = 1000
    await publish(job, progress(job, 6))  # the next live event reveals the gap
    seqs = [(await receive(ws))["seq"] for _ in range(7)]
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    await ws.disconnect()


# --- auth ------------------------------------------------------------------------------------

async def test_refusals_close_with_the_contract_codes(user, other_user, token):
    job = await make_job(user)
    theirs = await make_job(other_user)
    cases = [
        (f"/ws/jobs/{job.id}/", [], 4401),
        (f"/ws/jobs/{job.id}/", bearer("jc_wrong"), 4401),
        (f"/ws/jobs/{theirs.id}/", bearer(token), 4404),
        (f"/ws/jobs/{uuid.uuid4()}/", bearer(token), 4404),
        ("/ws/jobs/not-a-uuid/", bearer(token), 4404),
        (f"/ws/jobs/{job.id}/?after=abc", bearer(token), 1008),
        ("/ws/nope/", bearer(token), 4404),
    ]
    for path, headers, code in cases:
        ws = await connect(path, headers)
        assert await closed_with(ws) == code, path
    assert connections.total == 0 and not connections.per_user


async def test_a_ticket_works_once(user):
    job = await make_job(user)
    ticket, _ = await database_sync_to_async(ticket_create)(user)
    ws = await connect(f"/ws/jobs/{job.id}/?ticket={ticket}", [])
    assert (await receive(ws))["type"] == "snapshot"
    await ws.disconnect()
    again = await connect(f"/ws/jobs/{job.id}/?ticket={ticket}", [])
    assert await closed_with(again) == 4401


async def test_session_cookie_needs_an_allowed_origin(user):
    job = await make_job(user)
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ok = await connect(f"/ws/jobs/{job.id}/", [(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")])
    assert (await receive(ok))["type"] == "snapshot"
    await ok.disconnect()
    for origin in ([(b"origin", b"http://evil.example")], []):
        ws = await connect(f"/ws/jobs/{job.id}/", [(b"cookie", cookie), *origin])
        assert await closed_with(ws) == 4401


# --- client messages -------------------------------------------------------------------------

async def test_cancel_over_the_socket(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await ws.send_to(text_data='{"type": "cancel"}')
    messages, code = await events_until_close(ws)
    assert messages[-1]["type"] == "state" and messages[-1]["state"] == "cancelled" and code == 1000
    assert (await database_sync_to_async(Job.objects.get)(id=job.id)).state == "cancelled"


async def test_garbage_gets_error_messages_then_1008(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    await ws.send_to(text_data="not json")
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] and error["detail"]
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await receive(ws))["type"] == "error"
    for text in ('{"type": "dance"}', "[]", '{"type": "cancel", "extra": 1}'):
        await ws.send_to(text_data=text)
    assert [(await receive(ws))["type"] for _ in range(2)] == ["error", "error"]
    message = await receive(ws)
    if message["type"] == "error":
        message = await receive(ws)
    assert message["type"] == "websocket.close" and message["code"] == 1008
    await ws.disconnect()


# --- /ws/jobs/ -------------------------------------------------------------------------------

async def test_the_all_jobs_stream(user, other_user, token):
    queued = await make_job(user)
    running = await make_job(user, "running")
    await make_job(user, "succeeded")
    theirs = await make_job(other_user, "running")
    ws = await connect("/ws/jobs/", bearer(token))
    snapshots = [await receive(ws), await receive(ws)]
    assert {s["job"]["id"] for s in snapshots} == {str(queued.id), str(running.id)}
    assert all(s["type"] == "snapshot" for s in snapshots)

    await publish(theirs, progress(theirs, 1))
    await publish(running, progress(running, 1))
    event = await receive(ws)
    assert event["job_id"] == str(running.id) and event["seq"] == 1

    new, created = await database_sync_to_async(job_submit)(user, "demo.count", {"steps": 3})
    assert created
    announced = await receive(ws)
    assert announced["type"] == "snapshot" and announced["job"]["id"] == str(new.id) and announced["job"]["state"] == "queued"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


# --- limits and health -----------------------------------------------------------------------

async def test_connection_limits(user, token, settings):
    job = await make_job(user)
    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 1}
    first = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(first)
    second = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert await closed_with(second) == 4429
    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 100, "WS_MAX_CONNECTIONS": 1}
    third = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert await closed_with(third) == 1013
    await first.disconnect()
    assert connections.total == 0 and not connections.per_user and not connections.consumers


async def test_draining_refuses_new_sockets_and_fails_readiness(user, token):
    job = await make_job(user)
    connections.draining = True
    try:
        ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
        assert await closed_with(ws) == 1012
        response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=TIMEOUT)
        assert response["status"] == 503
    finally:
        connections.draining = False


async def test_health_endpoints(db):
    for path in ("/healthz", "/readyz"):
        response = await HttpCommunicator(application, "GET", path).get_response(timeout=TIMEOUT)
        assert response["status"] == 200 and orjson.loads(response["body"])["status"] == "ok"


async def test_long_lived_sockets_stay_in_their_groups(user, token, settings):
    """A socket open longer than the layer's group expiry still gets events."""
    from jobcast.ws import membership

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["group_expiry"] = 2
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    try:
        await asyncio.sleep(3.5)  # past the expiry; the refresher runs every 0.5 s
        await publish(job, progress(job, 1))
        assert (await receive(ws))["seq"] == 1
    finally:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["group_expiry"] = 86400
        for task in list(membership._refreshers.values()):
            task.cancel()
        await ws.disconnect()
