"""The WebSocket consumers (in-process, Channels' WebsocketCommunicator) on real Redis and the database.

Every socket goes through `ServerLike`, which holds the application to the two ASGI rules
uvicorn enforces and WebsocketCommunicator does not: nothing may be sent after
`websocket.close` (RuntimeError), and a send to a client that has gone raises
`ClientDisconnected`. A consumer that breaks either rule dies in production without its
`disconnect()`, leaking its connection slot and its group memberships; here the
communicator re-raises the exception and the test fails.

The connection book (`jobcast.ws.limits.connections`) is checked to be empty after every
test (autouse fixture `connection_book_is_empty_afterwards`).
"""

from __future__ import annotations

import logging

import asyncio
import threading
import time
import uuid

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from uvicorn.protocols.utils import ClientDisconnected

from jobcast.accounts.services import ticket_create, token_create
from jobcast.events.groups import ALL_JOBS_GROUP, job_group, user_group
from tests.support import publish as publish_now
from jobcast.events.schema import LogEvent, ProgressEvent, StateEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_cancel_requested, job_submit, job_transition
from jobcast.ws.asgi import application
from jobcast.ws.limits import connections
from jobcast.ws.server import drain_sockets

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

TIMEOUT = 5
# How long a disconnect may take before the communicator cancels the consumer. Short on purpose:
# on Python 3.11, asyncio.wait_for (which redis-py sends commands with) can swallow a
# cancellation (CPython gh-86296), so a consumer that stops right after its handshake sometimes
# keeps waiting on its channel-layer receive until it is cancelled again. The connection book
# is released before that wait, and every check of it comes after the disconnect.
DISCONNECT_TIMEOUT = 1


# --- helpers -------------------------------------------------------------------------------------

class ServerLike:
    """An ASGI wrapper that sends like uvicorn: nothing after close, and a gone client raises."""

    def __init__(self, app):
        self.app = app
        self.closed = False
        self.client_gone = False

    async def __call__(self, scope, receive, send):
        async def strict_send(message):
            if self.closed:
                raise RuntimeError(f"Unexpected ASGI message {message['type']!r} after sending 'websocket.close'")
            if self.client_gone and message["type"] == "websocket.send":
                raise ClientDisconnected()
            if message["type"] == "websocket.close":
                self.closed = True
            await send(message)

        await self.app(scope, receive, strict_send)


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


def state_event(job, state, **fields):
    return StateEvent(job_id=str(job.id), ts=time.time(), state=state, **fields)


async def publish(job, event):
    return await asyncio.to_thread(publish_now, event, job.owner_id)


async def publish_progress(job, count: int):
    for n in range(count):
        await publish(job, progress(job, n))


async def finish_job(job, state="succeeded", **fields):
    """What the worker does at the end: the row first, then the terminal event."""
    assert await database_sync_to_async(job_transition)(job.id, state, **fields)
    return await publish(job, state_event(job, state, **fields))


async def connect(path, headers=(), server: ServerLike | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(server or ServerLike(application), path, headers=list(headers))
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected  # refusals too are accepted first, then closed with their code
    return communicator


async def receive(communicator) -> dict:
    """The next message, decoded; a close comes back as {"type": "websocket.close", "code": ...}."""
    message = await communicator.receive_output(timeout=TIMEOUT)
    if message["type"] == "websocket.close":
        return message
    assert message["type"] == "websocket.send", message
    assert "text" in message, "every server message is a JSON text frame"
    return orjson.loads(message["text"])


async def receive_seqs(communicator, count: int) -> list[int]:
    seqs = []
    for _ in range(count):
        message = await receive(communicator)
        assert "seq" in message, message
        seqs.append(message["seq"])
    return seqs


async def closed_with(communicator) -> int:
    """The code the server closed with (then the client side disconnects, as a real client does)."""
    message = await communicator.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect(timeout=DISCONNECT_TIMEOUT)
    return message.get("code", 1000)


async def events_until_close(communicator) -> tuple[list[dict], int]:
    messages = []
    while True:
        message = await receive(communicator)
        if message["type"] == "websocket.close":
            await communicator.disconnect(timeout=DISCONNECT_TIMEOUT)
            return messages, message.get("code", 1000)
        messages.append(message)


def assert_no_open_connections():
    assert connections.total == 0
    assert not connections.per_user
    assert not connections.consumers


def group_members(group: str) -> list[str]:
    """This process's sockets in a group (the pub/sub layer keeps membership in the process)."""
    loop_layer = get_channel_layer("jobcast")._get_layer()
    return sorted(loop_layer.groups.get(loop_layer._get_group_channel_name(group), ()))


async def subscribed_processes(redis, group: str) -> int:
    """How many pub/sub connections Redis has subscribed to a group's channel."""
    channel = get_channel_layer("jobcast")._get_layer()._get_group_channel_name(group)
    ((_, count),) = await asyncio.to_thread(redis.pubsub_numsub, channel)
    return count


@pytest.fixture(autouse=True)
def connection_book_is_empty_afterwards():
    """Every test leaves no socket counted; a leak is reported and then forgotten for the next test."""
    assert_no_open_connections()
    yield
    try:
        assert_no_open_connections()
    finally:
        connections.total = 0
        connections.per_user.clear()
        connections.consumers.clear()
        connections.draining = False


@pytest.fixture
def token(user):
    return token_create(user.username)


@pytest.fixture
def capacity():
    """Set the queue capacity of sockets opened from now on in this test's event loop."""

    def set_capacity(value: int) -> None:
        get_channel_layer("jobcast")._get_layer().capacity = value

    return set_capacity


# --- /ws/jobs/{id}/ without after ---------------------------------------------------------------

async def test_snapshot_then_live_events_then_close_1000(user, token):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    latency_before = sample("jobcast_event_latency_seconds_count")
    sent_before = sample("jobcast_ws_messages_sent_total", type="progress")
    job = await make_job(user, "running")
    await publish(job, state_event(job, "running"))
    await publish_progress(job, 3)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is False
    assert snapshot["job"]["id"] == str(job.id) and snapshot["job"]["kind"] == "demo.count"
    assert snapshot["job"]["seq"] == 4 and snapshot["job"]["state"] == "running"
    assert snapshot["job"]["progress"]["current"] == 2
    assert sample("jobcast_ws_connections") == 1
    await publish_progress(job, 2)
    await publish(job, LogEvent(job_id=str(job.id), ts=time.time(), message="almost"))
    await finish_job(job, "succeeded", result={"ok": True})
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [5, 6, 7, 8]
    assert [m["type"] for m in messages] == ["progress", "progress", "log", "state"]
    assert messages[2]["message"] == "almost" and messages[2]["job_id"] == str(job.id)
    assert messages[-1]["state"] == "succeeded" and messages[-1]["result"] == {"ok": True}
    assert isinstance(messages[-1]["ts"], float)
    assert code == 1000
    assert sample("jobcast_event_latency_seconds_count") == latency_before + 4
    assert sample("jobcast_ws_messages_sent_total", type="progress") == sent_before + 2
    assert sample("jobcast_ws_connections") == 0
    assert_no_open_connections()


async def test_a_job_without_events_has_seq_0_and_its_first_event_is_1(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["job"]["seq"] == 0 and snapshot["job"]["state"] == "queued"
    assert await ws.receive_nothing(timeout=0.2)
    await publish(job, state_event(job, "running"))
    first = await receive(ws)
    assert first["type"] == "state" and first["seq"] == 1 and first["state"] == "running"
    await ws.disconnect()


def publish_in_thread(job, count: int) -> threading.Thread:
    """Publish `count` progress events from another thread, spread over a few hundred ms."""

    def run():
        for n in range(count):
            publish_now(progress(job, n), job.owner_id)
            time.sleep(0.001)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("after", [None, 0, 20, 25])
async def test_connecting_while_events_are_published_misses_and_repeats_nothing(user, token, after):
    job = await make_job(user, "running")
    await publish_progress(job, 25)
    thread = publish_in_thread(job, 200)
    try:
        path = f"/ws/jobs/{job.id}/" + ("" if after is None else f"?after={after}")
        ws = await connect(path, bearer(token))
        first_message = await receive(ws)
        publishing_when_connected = thread.is_alive()
        if after is None:
            assert first_message["type"] == "snapshot" and first_message["reset"] is False
            start = last = first_message["job"]["seq"]
            seqs = []
        else:
            assert first_message["type"] == "progress", first_message
            start = after
            seqs = [last := first_message["seq"]]
        while last < 225:
            message = await receive(ws)
            assert message["type"] == "progress", message
            seqs.append(last := message["seq"])
        assert seqs == list(range(start + 1, 226))
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()
    finally:
        await asyncio.to_thread(thread.join)
    assert publishing_when_connected  # the test raced the handshake against the publisher


async def test_events_of_other_jobs_do_not_reach_a_job_stream(user, token):
    job = await make_job(user, "running")
    other = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await publish_progress(other, 3)
    await publish(job, progress(job, 1))
    message = await receive(ws)
    assert message["job_id"] == str(job.id) and message["seq"] == 1
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


# --- after=N ------------------------------------------------------------------------------------

async def test_after_replays_history_then_goes_live(user, token):
    job = await make_job(user, "running")
    await publish_progress(job, 5)
    ws = await connect(f"/ws/jobs/{job.id}/?after=2", bearer(token))
    replayed = [await receive(ws) for _ in range(3)]
    assert [m["seq"] for m in replayed] == [3, 4, 5]
    assert all(m["type"] == "progress" for m in replayed)  # no snapshot when resuming
    await publish(job, LogEvent(job_id=str(job.id), ts=time.time(), message="live"))
    live = await receive(ws)
    assert live["seq"] == 6 and live["type"] == "log" and live["message"] == "live"
    await finish_job(job)
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [7] and messages[0]["state"] == "succeeded" and code == 1000


async def test_after_equal_to_the_latest_seq_sends_nothing_until_the_next_event(user, token):
    job = await make_job(user, "running")
    await publish_progress(job, 4)
    ws = await connect(f"/ws/jobs/{job.id}/?after=4", bearer(token))
    assert await ws.receive_nothing(timeout=0.3)
    await publish(job, progress(job, 9))
    assert await receive_seqs(ws, 1) == [5]
    await ws.disconnect()


async def test_after_beyond_trimmed_history_gets_a_reset_snapshot(user, token, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job = await make_job(user, "running")
    await publish_progress(job, 10)
    ws = await connect(f"/ws/jobs/{job.id}/?after=2", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is True and snapshot["job"]["seq"] == 10
    await publish(job, progress(job, 99))
    live = await receive(ws)
    assert live["seq"] == 11 and live["current"] == 99
    await ws.disconnect()
    # Still within what history keeps: a plain replay.
    ws = await connect(f"/ws/jobs/{job.id}/?after=8", bearer(token))
    assert await receive_seqs(ws, 3) == [9, 10, 11]
    await ws.disconnect()


async def test_after_on_expired_history_of_a_finished_job_gets_a_reset_snapshot(user, token):
    """History expired (HISTORY_TTL) but the row knows the job reached seq 5."""
    job = await make_job(user, "succeeded")
    await database_sync_to_async(Job.objects.filter(id=job.id).update)(seq=5, result={"n": 1})
    ws = await connect(f"/ws/jobs/{job.id}/?after=2", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is True
    assert snapshot["job"]["seq"] == 5 and snapshot["job"]["state"] == "succeeded"
    assert await closed_with(ws) == 1000


async def test_after_beyond_the_jobs_latest_seq_gets_a_reset_snapshot(user, token):
    """A client resuming above the job's seq (its state is not this job's): resynchronised,
    so that it neither waits forever nor skips the events numbered up to its `after`."""
    job = await make_job(user, "running")
    await publish_progress(job, 3)
    ws = await connect(f"/ws/jobs/{job.id}/?after=50", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is True and snapshot["job"]["seq"] == 3
    await finish_job(job)
    messages, code = await events_until_close(ws)
    assert [(m["seq"], m["type"]) for m in messages] == [(4, "state")] and code == 1000


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "%C2%B2", "%D9%A3", "1e3", "9" * 19, "0x10"])
async def test_an_unusable_after_is_refused_with_1008(user, token, after):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/?after={after}", bearer(token))
    assert await closed_with(ws) == 1008


# --- finished jobs -----------------------------------------------------------------------------

async def test_a_finished_job_sends_its_snapshot_or_remaining_history_then_closes(user, token):
    job = await make_job(user, "running")
    await publish_progress(job, 2)
    await finish_job(job, "failed", error={"type": "X", "message": "y"})

    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is False
    assert snapshot["job"]["state"] == "failed" and snapshot["job"]["error"] == {"type": "X", "message": "y"}
    assert snapshot["job"]["seq"] == 3 and snapshot["job"]["finished_at"]
    assert await closed_with(ws) == 1000

    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [1, 2, 3] and code == 1000
    assert messages[-1]["type"] == "state" and messages[-1]["state"] == "failed"

    ws = await connect(f"/ws/jobs/{job.id}/?after=1", bearer(token))
    messages, code = await events_until_close(ws)
    assert [m["seq"] for m in messages] == [2, 3] and code == 1000

    ws = await connect(f"/ws/jobs/{job.id}/?after=3", bearer(token))
    assert await closed_with(ws) == 1000
    assert_no_open_connections()


async def test_a_job_cancelled_while_queued_closes_after_its_snapshot(user, token):
    job = await make_job(user)
    await finish_job(job, "cancelled")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["job"]["state"] == "cancelled" and snapshot["job"]["seq"] == 1
    assert await closed_with(ws) == 1000


@pytest.mark.parametrize("after", [None, "0", "2"])
async def test_a_finished_row_whose_terminal_event_is_still_on_its_way(user, token, after):
    """The worker writes the row, then publishes the terminal event: a socket opened in
    between still gets that event (and then the close), whether resuming or not."""
    job = await make_job(user, "running")
    await publish(job, state_event(job, "running"))
    await publish_progress(job, 1)
    assert await database_sync_to_async(job_transition)(job.id, "succeeded", result={"n": 1})
    path = f"/ws/jobs/{job.id}/" + ("" if after is None else f"?after={after}")
    ws = await connect(path, bearer(token))
    expected_before = {None: [], "0": [1, 2], "2": []}[after]
    if after is None:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot" and snapshot["job"]["seq"] == 2
    assert await receive_seqs(ws, len(expected_before)) == expected_before
    assert await ws.receive_nothing(timeout=0.3)  # still open: the terminal event has not been published
    await publish(job, state_event(job, "succeeded", result={"n": 1}))
    messages, code = await events_until_close(ws)
    assert [(m["seq"], m["type"], m["state"]) for m in messages] == [(3, "state", "succeeded")]
    assert code == 1000


# --- gaps ---------------------------------------------------------------------------------------

async def test_a_socket_whose_queue_overflowed_catches_up_from_history(user, token, capacity):
    from prometheus_client import REGISTRY

    job = await make_job(user, "running")
    capacity(2)
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await publish(job, progress(job, 0))
    assert await receive_seqs(ws, 1) == [1]  # the socket is in its group
    dropped = REGISTRY.get_sample_value("jobcast_ws_messages_dropped_total", {"reason": "queue_full"}) or 0
    # Published from the event loop's own thread on purpose: the consumer cannot read
    # meanwhile, so its queue (capacity 2) overflows once the loop runs again.
    for n in range(1, 7):
        publish_now(progress(job, n), job.owner_id)
    # Two queued events, then the resync marker: the rest comes from history, with no
    # further live event needed to reveal the gap.
    assert await receive_seqs(ws, 6) == [2, 3, 4, 5, 6, 7]
    assert await ws.receive_nothing(timeout=0.3)  # no duplicates
    assert REGISTRY.get_sample_value("jobcast_ws_messages_dropped_total", {"reason": "queue_full"}) >= dropped + 3
    await publish(job, progress(job, 7))
    assert await receive_seqs(ws, 1) == [8]
    await ws.disconnect()


async def test_events_published_together_arrive_as_separate_frames_in_order(user, token):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["job"]["seq"] == 0
    batch = [progress(job, 1), LogEvent(job_id=str(job.id), ts=time.time(), message="two"), progress(job, 3)]
    await asyncio.to_thread(publish_now, batch, job.owner_id)
    messages = [await receive(ws) for _ in range(3)]
    assert [(m["seq"], m["type"]) for m in messages] == [(1, "progress"), (2, "log"), (3, "progress")]
    await finish_job(job, "succeeded", result={"counted": 3})
    rest, code = await events_until_close(ws)
    assert [m["seq"] for m in rest] == [4] and code == 1000


async def test_a_lost_last_event_reaches_the_socket_through_the_sweeper(user, token, settings):
    """Pub/sub keeps nothing: an event lost on the way (here: the socket out of its group
    while it is published) and followed by nothing still arrives, from history."""
    settings.JOBCAST = {**settings.JOBCAST, "WS_RESYNC_SECONDS": 0.2}
    job = await make_job(user, "running")
    layer = get_channel_layer("jobcast")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await publish(job, progress(job, 1))
    assert await receive_seqs(ws, 1) == [1]
    (channel,) = group_members(job_group(job.id))
    await layer.group_discard(job_group(job.id), channel)
    await finish_job(job, "succeeded", result={"counted": 10})  # seq 2, the last
    await layer.group_add(job_group(job.id), channel)
    messages, code = await events_until_close(ws)
    assert [(m["seq"], m["state"]) for m in messages] == [(2, "succeeded")] and code == 1000


async def test_the_sweeper_skips_a_socket_refused_before_its_job_was_known():
    """A JobConsumer is counted from admission; until its ownership check it has no job."""
    from jobcast.ws.resync import sweep_once

    class Refused:
        resumable, job, finished, last_seq, channel_name = True, None, False, 0, "x"

    refused = Refused()
    connections.consumers.add(refused)
    try:
        assert await sweep_once(get_channel_layer("jobcast"), {}) == 0
    finally:
        connections.consumers.discard(refused)


async def test_a_socket_that_is_receiving_is_never_nudged(user, token, settings):
    from jobcast.ws.resync import sweep_once

    job = await make_job(user, "running")
    layer = get_channel_layer("jobcast")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await publish(job, progress(job, 1))
    assert await receive_seqs(ws, 1) == [1]
    (consumer,) = [c for c in connections.consumers]
    seen = {}
    assert await sweep_once(layer, seen) == 0 and seen == {}  # up to date: nothing noted
    consumer.cursor.last_seq = 0  # pretend it is behind, as if seq 1 were still on its way
    assert await sweep_once(layer, seen) == 0 and seen == {consumer: 0}  # noted, not nudged yet
    consumer.cursor.last_seq = 1  # it moved on: the note is dropped
    assert await sweep_once(layer, seen) == 0 and seen == {}
    await ws.disconnect()


async def test_missed_events_out_of_order_and_duplicates_are_repaired(user, token, redis):
    """Events that skipped the socket are fetched from history; a late duplicate is dropped."""
    job = await make_job(user, "running")
    layer = get_channel_layer("jobcast")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["job"]["seq"] == 0
    await publish(job, progress(job, 1))
    assert await receive_seqs(ws, 1) == [1]
    (channel,) = group_members(job_group(job.id))

    await layer.group_discard(job_group(job.id), channel)  # 2 and 3 never reach this socket live
    await publish(job, progress(job, 2))
    await publish(job, LogEvent(job_id=str(job.id), ts=time.time(), message="three"))
    await layer.group_add(job_group(job.id), channel)
    await publish(job, progress(job, 4))
    repaired = [await receive(ws) for _ in range(3)]
    assert [m["seq"] for m in repaired] == [2, 3, 4]
    assert repaired[1]["type"] == "log" and repaired[1]["message"] == "three"

    duplicate = {"type": "job.event", "text": orjson.dumps(repaired[1]).decode(), "seq": 3,
                 "job_id": str(job.id), "event": "log", "ts": time.time()}
    layer._get_layer().channels[channel].put_nowait(layer.serialize(duplicate))
    await publish(job, progress(job, 5))
    assert await receive_seqs(ws, 1) == [5]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_a_gap_that_history_no_longer_has_closes_with_4408(user, token, redis, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job = await make_job(user, "running")
    layer = get_channel_layer("jobcast")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await publish(job, progress(job, 1))
    assert await receive_seqs(ws, 1) == [1]
    (channel,) = group_members(job_group(job.id))
    await layer.group_discard(job_group(job.id), channel)
    await publish_progress(job, 5)  # 2..6; history keeps 4..6
    await layer.group_add(job_group(job.id), channel)
    await publish(job, progress(job, 7))
    assert await closed_with(ws) == 4408
    assert group_members(job_group(job.id)) == []
    assert await subscribed_processes(redis, job_group(job.id)) == 0


# --- auth ---------------------------------------------------------------------------------------

async def test_refusals_close_with_the_contract_codes(user, other_user, token):
    job = await make_job(user)
    theirs = await make_job(other_user)
    cases = [
        (f"/ws/jobs/{job.id}/", [], 4401),
        (f"/ws/jobs/{job.id}/", bearer("jc_wrong"), 4401),
        (f"/ws/jobs/{job.id}/", [(b"authorization", b"Bearer ")], 4401),
        (f"/ws/jobs/{job.id}/", [(b"authorization", token.encode())], 4401),  # no scheme
        (f"/ws/jobs/{job.id}/?ticket=not-a-ticket", [], 4401),
        (f"/ws/jobs/{theirs.id}/", bearer(token), 4404),
        (f"/ws/jobs/{theirs.id}/?after=0", bearer(token), 4404),
        (f"/ws/jobs/{uuid.uuid4()}/", bearer(token), 4404),
        ("/ws/jobs/not-a-uuid/", bearer(token), 4404),
        (f"/ws/jobs/{job.id}/?after=abc", bearer(token), 1008),
        ("/ws/nope/", bearer(token), 4404),
        ("/ws/nope/", [], 4404),
        (f"/ws/jobs/{job.id}/extra/", bearer(token), 4404),
    ]
    for path, headers, code in cases:
        ws = await connect(path, headers)
        assert await closed_with(ws) == code, (path, headers)
        assert_no_open_connections()


async def test_another_users_job_stays_invisible_even_after_it_finishes(user, other_user, token):
    theirs = await make_job(other_user, "running")
    await publish(theirs, progress(theirs, 1))
    await finish_job(theirs)
    for path in (f"/ws/jobs/{theirs.id}/", f"/ws/jobs/{theirs.id}/?after=0"):
        ws = await connect(path, bearer(token))
        assert await closed_with(ws) == 4404


async def test_a_ticket_works_once(user):
    job = await make_job(user)
    ticket, expires_in = await database_sync_to_async(ticket_create)(user)
    assert 0 < expires_in <= 60
    ws = await connect(f"/ws/jobs/{job.id}/?ticket={ticket}", [])
    assert (await receive(ws))["type"] == "snapshot"
    await ws.disconnect()
    again = await connect(f"/ws/jobs/{job.id}/?ticket={ticket}", [])
    assert await closed_with(again) == 4401


async def test_a_ticket_works_on_the_all_jobs_stream_and_with_after(user):
    job = await make_job(user, "running")
    await publish_progress(job, 2)
    ticket, _ = await database_sync_to_async(ticket_create)(user)
    ws = await connect(f"/ws/jobs/{job.id}/?after=1&ticket={ticket}", [])
    assert await receive_seqs(ws, 1) == [2]
    await ws.disconnect()
    ticket, _ = await database_sync_to_async(ticket_create)(user)
    ws = await connect(f"/ws/jobs/?ticket={ticket}", [])
    assert (await receive(ws))["job"]["id"] == str(job.id)
    await ws.disconnect()


async def session_cookie(user) -> bytes:
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def test_session_cookie_needs_an_allowed_origin(user):
    job = await make_job(user)
    cookie = await session_cookie(user)
    for origin in (b"http://127.0.0.1", b"http://127.0.0.1:8000", b"http://localhost:8000"):
        ok = await connect(f"/ws/jobs/{job.id}/", [(b"cookie", cookie), (b"origin", origin)])
        snapshot = await receive(ok)
        assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == str(job.id), origin
        await ok.disconnect()
    for origin in ([(b"origin", b"http://evil.example")], [(b"origin", b"null")],
                   [(b"origin", b"http://127.0.0.1.evil.example")], []):
        ws = await connect(f"/ws/jobs/{job.id}/", [(b"cookie", cookie), *origin])
        assert await closed_with(ws) == 4401, origin
    ws = await connect(f"/ws/jobs/{job.id}/", [(b"cookie", b"sessionid=forged"), (b"origin", b"http://127.0.0.1")])
    assert await closed_with(ws) == 4401


async def test_session_cookie_on_the_all_jobs_stream(user):
    job = await make_job(user)
    cookie = await session_cookie(user)
    ws = await connect("/ws/jobs/", [(b"cookie", cookie), (b"origin", b"http://127.0.0.1")])
    assert (await receive(ws))["job"]["id"] == str(job.id)
    await ws.disconnect()
    ws = await connect("/ws/jobs/", [(b"cookie", cookie), (b"origin", b"http://evil.example")])
    assert await closed_with(ws) == 4401


# --- client messages ---------------------------------------------------------------------------

async def test_cancel_over_the_socket(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await ws.send_to(text_data='{"type": "cancel"}')
    messages, code = await events_until_close(ws)
    assert [(m["type"], m["seq"], m["state"]) for m in messages] == [("state", 1, "cancelled")]
    assert code == 1000
    row = await database_sync_to_async(Job.objects.get)(id=job.id)
    assert row.state == "cancelled" and row.seq == 1 and row.finished_at is not None


async def test_cancel_of_a_running_job_is_requested_and_the_socket_waits_for_the_worker(user, token):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await ws.send_to(text_data='{"type": "cancel"}')
    assert await ws.receive_nothing(timeout=0.3)
    row = await database_sync_to_async(Job.objects.get)(id=job.id)
    assert row.state == "running" and await database_sync_to_async(job_cancel_requested)(job.id)
    await finish_job(job, "cancelled")  # the worker noticed
    messages, code = await events_until_close(ws)
    assert [m["state"] for m in messages] == ["cancelled"] and code == 1000


async def test_garbage_gets_error_messages_and_the_socket_stays_open(user, token):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    await ws.send_to(text_data="not json")
    error = await receive(ws)
    assert error["type"] == "error" and isinstance(error["code"], str) and error["code"]
    assert isinstance(error["detail"], str) and error["detail"]
    await ws.send_to(bytes_data=b"\x00\x01")
    binary_error = await receive(ws)
    assert binary_error["type"] == "error" and binary_error["code"] and binary_error["detail"]
    await publish(job, progress(job, 1))  # still open and streaming
    assert await receive_seqs(ws, 1) == [1]
    await ws.disconnect()


async def test_repeated_garbage_closes_with_1008(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    garbage = ["not json", '{"type": "dance"}', "[]", '{"type": "cancel", "extra": 1}']
    for text in garbage:
        await ws.send_to(text_data=text)
        assert (await receive(ws))["type"] == "error"
    await ws.send_to(bytes_data=b"\xff")  # the fifth
    last = await receive(ws)
    assert last["type"] == "error"
    assert await closed_with(ws) == 1008
    assert (await database_sync_to_async(Job.objects.get)(id=job.id)).state == "queued"


async def test_messages_after_the_close_are_not_answered(user, token):
    """A client that keeps sending (or events keep coming) after the 1008 close: nothing more is
    sent on the closed socket, and the consumer still cleans up when the client goes."""
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    for n in range(8):
        await ws.send_to(text_data=f"garbage {n}")
    messages = []
    while (message := await receive(ws))["type"] != "websocket.close":
        messages.append(message)
    assert [m["type"] for m in messages] == ["error"] * 5 and message["code"] == 1008
    await publish(job, progress(job, 1))
    await ws.send_to(text_data='{"type": "cancel"}')
    await asyncio.sleep(0.2)
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect(timeout=DISCONNECT_TIMEOUT)
    assert not await database_sync_to_async(job_cancel_requested)(job.id)  # the cancel arrived after the close
    assert_no_open_connections()


async def test_a_finished_socket_ignores_a_late_cancel(user, token):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/?after=0", bearer(token))
    await finish_job(job)
    assert (await receive(ws))["state"] == "succeeded"
    close = await ws.receive_output(timeout=TIMEOUT)
    assert close["type"] == "websocket.close" and close["code"] == 1000
    await ws.send_to(text_data='{"type": "cancel"}')  # crossed the close on the wire
    await asyncio.sleep(0.2)
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect(timeout=DISCONNECT_TIMEOUT)


async def test_cancel_of_a_job_deleted_meanwhile_is_a_not_found_error(user, token):
    """The job was pruned while its socket was open: the cancel answers an error, the socket lives on."""
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await database_sync_to_async(Job.objects.filter(id=job.id).delete)()
    await ws.send_to(text_data='{"type": "cancel"}')
    assert await receive(ws) == {"type": "error", "code": "not_found", "detail": "Not found."}
    await ws.send_to(text_data="not json")  # the consumer is still there to answer
    assert (await receive(ws))["code"] == "bad_message"
    await ws.disconnect(timeout=DISCONNECT_TIMEOUT)


async def test_cancel_on_the_all_jobs_stream_is_an_error(user, token):
    job = await make_job(user)
    ws = await connect("/ws/jobs/", bearer(token))
    assert (await receive(ws))["job"]["id"] == str(job.id)
    await ws.send_to(text_data='{"type": "cancel"}')
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] and error["detail"]
    assert (await database_sync_to_async(Job.objects.get)(id=job.id)).state == "queued"
    await ws.send_to(text_data="garbage")
    assert (await receive(ws))["type"] == "error"
    await ws.disconnect()


# --- /ws/jobs/ --------------------------------------------------------------------------------

async def test_the_all_jobs_stream(user, other_user, token, redis):
    queued = await make_job(user)
    running = await make_job(user, "running")
    await publish(running, state_event(running, "running"))
    await publish_progress(running, 2)
    await make_job(user, "succeeded")
    await make_job(user, "cancelled")
    theirs = await make_job(other_user, "running")
    theirs_queued = await make_job(other_user)
    ws = await connect("/ws/jobs/", bearer(token))
    snapshots = [await receive(ws), await receive(ws)]
    assert all(s["type"] == "snapshot" and s["reset"] is False for s in snapshots)
    by_id = {s["job"]["id"]: s["job"] for s in snapshots}
    assert set(by_id) == {str(queued.id), str(running.id)}
    assert by_id[str(running.id)]["seq"] == 3 and by_id[str(running.id)]["progress"]["current"] == 1
    assert by_id[str(queued.id)]["state"] == "queued" and by_id[str(queued.id)]["seq"] == 0
    assert await ws.receive_nothing(timeout=0.2)

    await publish(theirs, progress(theirs, 1))
    await publish(running, progress(running, 7))
    event = await receive(ws)
    assert event["type"] == "progress" and event["job_id"] == str(running.id) and event["seq"] == 4

    new, created = await database_sync_to_async(job_submit)(user, "demo.count", {"steps": 3})
    assert created
    announced = await receive(ws)
    assert announced["type"] == "snapshot" and announced["job"]["id"] == str(new.id)
    assert announced["job"]["state"] == "queued" and announced["job"]["seq"] == 0
    assert announced["job"]["params"]["steps"] == 3

    theirs_new, _ = await database_sync_to_async(job_submit)(other_user, "demo.count", {"steps": 3})
    await publish(theirs_new, progress(theirs_new, 1))
    await finish_job(theirs_queued, "cancelled")
    assert await ws.receive_nothing(timeout=0.3)

    await publish(new, state_event(new, "running"))
    await publish(queued, LogEvent(job_id=str(queued.id), ts=time.time(), message="q"))
    await finish_job(running, "succeeded", result={"counted": 10})
    received = [await receive(ws) for _ in range(3)]
    assert [(m["job_id"], m["seq"], m["type"]) for m in received] == [
        (str(new.id), 1, "state"), (str(queued.id), 1, "log"), (str(running.id), 5, "state")
    ]
    assert received[2]["state"] == "succeeded"
    assert await ws.receive_nothing(timeout=0.3)  # a finished job does not close this stream
    await publish(new, progress(new, 1))
    assert (await receive(ws))["seq"] == 2
    await ws.disconnect()
    assert group_members(user_group(user.id)) == []
    assert await subscribed_processes(redis, user_group(user.id)) == 0


async def test_the_all_jobs_stream_skips_what_its_snapshot_already_covers(user, token):
    """Events published while the stream connects arrive once, after the snapshot that covers them."""
    job = await make_job(user, "running")
    await publish_progress(job, 5)
    thread = publish_in_thread(job, 200)
    try:
        ws = await connect("/ws/jobs/", bearer(token))
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        seqs, last = [], snapshot["job"]["seq"]
        while last < 205:
            seqs.append(last := (await receive(ws))["seq"])
        assert seqs == list(range(snapshot["job"]["seq"] + 1, 206))
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()
    finally:
        await asyncio.to_thread(thread.join)


async def test_the_all_jobs_stream_of_a_user_without_jobs(user, token):
    ws = await connect("/ws/jobs/", bearer(token))
    assert await ws.receive_nothing(timeout=0.3)
    job, _ = await database_sync_to_async(job_submit)(user, "demo.count", {"steps": 3})
    assert (await receive(ws))["job"]["id"] == str(job.id)
    await ws.disconnect()


async def test_the_all_jobs_stream_refusals(user, token):
    for headers, code in (([], 4401), (bearer("jc_wrong"), 4401)):
        ws = await connect("/ws/jobs/", headers)
        assert await closed_with(ws) == code


# --- limits -------------------------------------------------------------------------------------

async def test_connection_limits(user, other_user, token, settings):
    job = await make_job(user)
    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 1}
    first = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(first)
    assert connections.total == 1 and connections.per_user[user.id] == 1
    for path in (f"/ws/jobs/{job.id}/", "/ws/jobs/"):
        second = await connect(path, bearer(token))
        assert await closed_with(second) == 4429
    bobs = await connect("/ws/jobs/", bearer(await database_sync_to_async(token_create)(other_user.username)))
    assert await bobs.receive_nothing(timeout=0.2)  # the limit is per user
    await bobs.disconnect()
    assert connections.total == 1 and other_user.id not in connections.per_user

    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 100, "WS_MAX_CONNECTIONS": 1}
    third = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert await closed_with(third) == 1013
    await first.disconnect()
    assert_no_open_connections()
    again = await connect(f"/ws/jobs/{job.id}/", bearer(token))  # the slot is free again
    assert (await receive(again))["type"] == "snapshot"
    await again.disconnect()
    assert_no_open_connections()


async def test_refused_and_finished_sockets_give_their_slots_back(user, other_user, token):
    job = await make_job(user, "running")
    theirs = await make_job(other_user)
    for path in (f"/ws/jobs/{theirs.id}/", f"/ws/jobs/{job.id}/?after=x", f"/ws/jobs/{uuid.uuid4()}/"):
        ws = await connect(path, bearer(token))
        await closed_with(ws)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    await finish_job(job)
    await events_until_close(ws)
    assert_no_open_connections()


async def test_a_client_that_vanishes_mid_stream_gives_its_slot_and_groups_back(user, token, redis):
    """uvicorn raises ClientDisconnected on a send to a client that is gone (before the
    consumer sees websocket.disconnect); the consumer must survive it and clean up."""
    job = await make_job(user, "running")
    server = ServerLike(application)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token), server=server)
    await receive(ws)
    all_jobs_server = ServerLike(application)
    all_jobs = await connect("/ws/jobs/", bearer(token), server=all_jobs_server)
    await receive(all_jobs)
    server.client_gone = all_jobs_server.client_gone = True
    await publish_progress(job, 3)
    await asyncio.sleep(0.3)  # the consumers tried to send
    await ws.disconnect(code=1006, timeout=DISCONNECT_TIMEOUT)
    await all_jobs.disconnect(code=1006, timeout=DISCONNECT_TIMEOUT)
    assert_no_open_connections()
    assert group_members(job_group(job.id)) == [] and group_members(user_group(user.id)) == []
    assert await subscribed_processes(redis, job_group(job.id)) == 0
    assert await subscribed_processes(redis, user_group(user.id)) == 0


async def test_a_consumer_that_is_cancelled_still_gives_its_slot_back(user, token):
    job = await make_job(user)
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    ws.future.cancel()  # e.g. the server shuts down without a disconnect message
    with pytest.raises(asyncio.CancelledError):
        await ws.future
    assert_no_open_connections()


async def test_draining_refuses_new_sockets_closes_open_ones_and_fails_readiness(user, token):
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    try:
        await drain_sockets(0)
        close = await ws.receive_output(timeout=TIMEOUT)
        assert close["type"] == "websocket.close" and close["code"] == 1012
        await publish_progress(job, 2)  # events that arrive after the 1012: nothing more is sent
        await asyncio.sleep(0.2)
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect(timeout=DISCONNECT_TIMEOUT)
        refused = await connect(f"/ws/jobs/{job.id}/", bearer(token))
        assert await closed_with(refused) == 1012
        response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=TIMEOUT)
        assert response["status"] == 503
    finally:
        connections.draining = False
    assert_no_open_connections()


# --- the ws tier's HTTP -------------------------------------------------------------------------

async def test_health_endpoints(db):
    healthz = await HttpCommunicator(application, "GET", "/healthz").get_response(timeout=TIMEOUT)
    assert healthz["status"] == 200 and orjson.loads(healthz["body"]) == {"status": "ok"}
    readyz = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=TIMEOUT)
    body = orjson.loads(readyz["body"])
    assert readyz["status"] == 200 and body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok", "delivery": "ok"}  # the ws tier needs all three
    missing = await HttpCommunicator(application, "GET", "/nope").get_response(timeout=TIMEOUT)
    assert missing["status"] == 404 and orjson.loads(missing["body"])["detail"]


async def test_readyz_fails_when_redis_does_not_answer(db, settings):
    from jobcast.cli.stack import free_port

    settings.JOBCAST = {**settings.JOBCAST, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=TIMEOUT)
    body = orjson.loads(response["body"])
    assert response["status"] == 503 and body["checks"]["redis"].startswith("error")


async def readyz() -> tuple[int, dict]:
    response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=TIMEOUT)
    return response["status"], orjson.loads(response["body"])


@pytest.fixture
def fresh_canary(monkeypatch):
    """Every /readyz runs the layer's canary again (no cached verdict between the steps of a test)."""
    from jobcast.ws import layer

    monkeypatch.setattr(layer, "CANARY_CACHE_SECONDS", 0)


async def test_readyz_runs_one_canary_per_window_however_often_it_is_probed(db, monkeypatch):
    loop_layer = get_channel_layer("jobcast")._get_layer()
    rounds = []
    real_round_trip = loop_layer.canary_round_trip

    async def counted_round_trip():
        rounds.append(1)
        await real_round_trip()

    monkeypatch.setattr(loop_layer, "canary_round_trip", counted_round_trip)
    answers = await asyncio.gather(*(readyz() for _ in range(10)))
    assert all(status == 200 for status, _ in answers) and len(rounds) == 1
    loop_layer.canary_checked_at -= 3.0  # the window (CANARY_CACHE_SECONDS) has passed
    assert (await readyz())[0] == 200 and len(rounds) == 2


async def test_readyz_is_503_when_redis_answers_ping_but_the_layer_no_longer_delivers(db, fresh_canary):
    assert (await readyz())[0] == 200
    (shard,) = get_channel_layer("jobcast")._get_layer()._shards
    shard._receive_task.cancel()  # the pub/sub reader is gone: published messages reach no socket
    status, body = await readyz()
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"]["redis"] == "ok"  # PING still answers
    assert body["checks"]["delivery"] == "error: DeliveryFailed: a canary message did not come back within 1 s"


async def test_readyz_is_503_while_redis_refuses_pub_sub_and_200_once_it_allows_it_again(db, fresh_canary, redis):
    """Redis answers PING but refuses every channel (an ACL change): no delivery, so not ready; then it recovers."""
    assert (await readyz())[0] == 200
    try:
        redis.execute_command("ACL", "SETUSER", "default", "resetchannels")
        status, body = await readyz()
        assert status == 503 and body["checks"]["redis"] == "ok", body
        assert body["checks"]["delivery"].startswith("error: DeliveryFailed: a canary message"), body
    finally:
        redis.execute_command("ACL", "SETUSER", "default", "allchannels")
    await ready_within(10)


async def ready_within(seconds: float) -> None:
    """Wait for /readyz to answer 200 (the layer's pub/sub connection back and subscribed)."""
    deadline = time.monotonic() + seconds
    while (answer := await readyz())[0] != 200:
        assert time.monotonic() < deadline, f"not ready again within {seconds} s: {answer}"
        await asyncio.sleep(0.2)


async def test_a_killed_pub_sub_connection_is_reconnected_and_sockets_miss_nothing(user, token, redis, fresh_canary, caplog):
    """CLIENT KILL TYPE pubsub (what a failover or a proxy does to the layer's connection): redis-py
    reconnects and subscribes again; what was published in between is repaired from history."""
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    await publish_progress(job, 3)
    assert await receive_seqs(ws, 3) == [1, 2, 3]
    killed = redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 1
    await publish_progress(job, 3)  # some of these reach Redis while the layer has no connection
    await ready_within(10)
    await publish_progress(job, 2)
    assert await receive_seqs(ws, 5) == [4, 5, 6, 7, 8]  # the gap repair fills in what pub/sub lost
    await finish_job(job)
    assert (await receive(ws))["seq"] == 9
    assert await closed_with(ws) == 1000
    # A lost connection is an outage, not a bug: nothing at ERROR (docs/operations.md, "Logs").
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any(r.levelno == logging.WARNING and "pub/sub connection failed" in r.getMessage() for r in caplog.records)


async def test_metrics_endpoint(db):
    response = await HttpCommunicator(application, "GET", "/metrics").get_response(timeout=TIMEOUT)
    assert response["status"] == 200 and b"jobcast_ws_connections" in response["body"]




# --- /ws/jobs/?all=1 (staff) ------------------------------------------------------------------

async def test_the_staff_stream_shows_every_users_jobs_with_their_owners(user, other_user, redis):
    staff = await database_sync_to_async(get_user_model().objects.create_user)("carol", is_staff=True)
    staff_token = await database_sync_to_async(token_create)(staff.username)
    alices = await make_job(user, "running")
    await publish_progress(alices, 2)
    bobs = await make_job(other_user)
    await make_job(other_user, "succeeded")
    ws = await connect("/ws/jobs/?all=1", bearer(staff_token))
    snapshots = [await receive(ws), await receive(ws)]
    assert [(s["job"]["id"], s["owner"]) for s in snapshots] == [(str(alices.id), "alice"), (str(bobs.id), "bob")]
    assert snapshots[0]["job"]["seq"] == 2 and snapshots[0]["job"]["progress"]["current"] == 1
    assert await ws.receive_nothing(timeout=0.2)

    # Live events of anyone's job, and a new job's snapshot with its owner.
    await publish(bobs, progress(bobs, 5))
    event = await receive(ws)
    assert (event["job_id"], event["seq"], event["current"]) == (str(bobs.id), 1, 5)
    new, _ = await database_sync_to_async(job_submit)(other_user, "demo.count", {"steps": 3})
    announced = await receive(ws)
    assert announced["type"] == "snapshot" and announced["owner"] == "bob" and announced["job"]["id"] == str(new.id)
    await finish_job(alices, "succeeded", result={"counted": 10})
    assert (await receive(ws))["state"] == "succeeded"
    assert await ws.receive_nothing(timeout=0.2)  # the stream stays open
    await ws.disconnect()
    assert group_members(ALL_JOBS_GROUP) == []
    assert await subscribed_processes(redis, ALL_JOBS_GROUP) == 0


async def test_the_staff_stream_is_refused_with_4403_to_other_users(user, token):
    job = await make_job(user, "running")
    ws = await connect("/ws/jobs/?all=1", bearer(token))
    assert await closed_with(ws) == 4403
    # ?all with another value is the user's own stream, as before.
    ws = await connect("/ws/jobs/?all=0", bearer(token))
    assert (await receive(ws))["job"]["id"] == str(job.id)
    await ws.disconnect()
    # No credential is still 4401, before the staff check.
    ws = await connect("/ws/jobs/?all=1")
    assert await closed_with(ws) == 4401
    assert group_members(ALL_JOBS_GROUP) == []


async def test_the_staff_stream_does_not_reach_a_users_own_stream(user, other_user, token):
    """A user's /ws/jobs/ gets only their jobs, although every event is published to jobs.all too."""
    theirs = await make_job(other_user, "running")
    ws = await connect("/ws/jobs/", bearer(token))
    await publish(theirs, progress(theirs, 1))
    await database_sync_to_async(job_submit)(other_user, "demo.count", {"steps": 3})
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()
