"""jobcast.client against the real stack through nginx: submit, get, list, cancel, events, kinds,
tickets and the resuming watch (which `jobcast watch` also uses, tests/e2e/test_cli.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import websockets

from jobcast.client import ApiError, Client, Unreachable
from jobcast.cli.stack import free_port
from jobcast.events.schema import JobDocument, LogEvent, ProgressEvent, SnapshotMessage, StateEvent

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def client(live_stack):
    with Client(live_stack.url, live_stack.token("e2e-client")) as client:
        yield client


def test_submit_get_events_and_list(client):
    job = client.submit("demo.count", {"steps": 4, "log_every": 2, "interval_ms": 300})
    assert isinstance(job, JobDocument) and job.created and job.state == "queued" and job.seq == 0
    assert job.params == {"steps": 4, "interval_ms": 300, "fail_at": None, "log_every": 2}
    again = client.submit("demo.count", {"steps": 4}, idempotency_key=f"k-{job.id}")
    replay = client.submit("demo.count", {"steps": 4}, idempotency_key=f"k-{job.id}")
    assert again.created and not replay.created and replay.id == again.id
    assert "created" not in replay.model_dump()  # not part of the job document

    async def follow():
        return [message async for message in client.watch(job.id)]

    messages = asyncio.run(asyncio.wait_for(follow(), 60))
    assert isinstance(messages[0], SnapshotMessage)
    assert isinstance(messages[-1], StateEvent) and messages[-1].state == "succeeded"
    logs = [m.message for m in messages if isinstance(m, LogEvent)]
    assert logs == ["reached step 2 of 4", "reached step 4 of 4"]

    fetched = client.get(job.id)
    assert fetched.state == "succeeded" and fetched.result == {"counted": 4}
    history = client.events(job.id)
    assert history.complete and [e.seq for e in history.events] == list(range(1, fetched.seq + 1))
    assert any(isinstance(e, ProgressEvent) for e in history.events)
    assert [e.seq for e in client.events(job.id, after=fetched.seq - 1).events] == [fetched.seq]
    # Folding the stored events into the first document gives what GET answers (but attempts).
    folded = job
    for event in history.events:
        folded = folded.apply(event)
    assert folded.model_dump(exclude={"attempts"}) == fetched.model_dump(exclude={"attempts"})

    listed = [j.id for j in client.jobs(limit=3)]
    assert listed[0] == again.id and job.id in listed
    assert all(j.state == "succeeded" for j in client.jobs(state="succeeded", limit=5))
    page = client.page(limit=1)
    assert len(page.items) == 1 and page.next


def test_watch_resumes_from_after(client):
    job = client.submit("demo.count", {"steps": 6, "log_every": 1, "interval_ms": 100})

    async def follow(after=None):
        return [message async for message in client.watch(job.id, after=after)]

    asyncio.run(asyncio.wait_for(follow(), 60))
    last = client.get(job.id).seq
    tail = asyncio.run(asyncio.wait_for(follow(after=last - 2), 60))
    assert [m.seq for m in tail] == [last - 1, last]  # no snapshot, nothing repeated


def test_cancel_and_errors(client, live_stack):
    job = client.submit("demo.count", {"steps": 10000, "interval_ms": 20})
    asked = client.cancel(job.id)
    assert asked.state in ("queued", "running", "cancelled")

    async def last():
        watch = client.watch(job.id)
        async for _ in watch:
            pass
        return watch.final

    assert asyncio.run(asyncio.wait_for(last(), 60)).state == "cancelled"
    with pytest.raises(ApiError) as caught:
        client.cancel(job.id)
    assert caught.value.status == 409 and "already cancelled" in caught.value.detail
    with pytest.raises(ApiError) as caught:
        client.submit("demo.count", {"steps": 0})
    assert caught.value.status == 400 and caught.value.errors[0]["loc"] == ["body", "params", "steps"]
    with pytest.raises(ApiError) as caught:
        client.get(str(uuid.uuid4()))
    assert caught.value.status == 404
    with Client(live_stack.url, "jc_wrong") as wrong, pytest.raises(ApiError) as caught:
        wrong.kinds()
    assert caught.value.status == 401
    with Client(f"http://127.0.0.1:{free_port()}", "t") as nowhere, pytest.raises(Unreachable):
        nowhere.get(job.id)


def test_kinds_and_a_ticket_that_opens_one_socket(client, live_stack):
    kinds = {kind.name: kind for kind in client.kinds()}
    assert kinds["demo.count"].params_schema["properties"]["steps"]["minimum"] == 1
    job = client.submit("demo.count", {"steps": 1})
    ticket = client.ticket()
    assert 1 <= ticket.expires_in <= 60

    async def open_with(ticket_value):
        async with websockets.connect(f"{live_stack.ws_url}/ws/jobs/{job.id}/?ticket={ticket_value}") as ws:
            return SnapshotMessage.model_validate_json(await ws.recv())

    assert asyncio.run(open_with(ticket.ticket)).job.id == job.id
