"""Redis going away under the tiers' code, in-process against a real redis-server of the test's own.

The publisher waits an outage out and never runs a publish twice; a job that ends while Redis
is away still records the seq of its end, and readers get that end once Redis is back; the API
answers 503 JSON and leaves no half-created job; sockets are closed with 1013 (docs/protocol.md).
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from django.test import Client

from jobcast.events.groups import job_group, user_group
from jobcast.events.history import read_history
from jobcast.events.publisher import JobPublisher, RedisUnavailable, _run_script
from jobcast.events.schema import LogEvent, ProgressEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_finish, job_start, job_submit
from jobcast.jobs.states import State
from tests.support import start_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def own_redis(tmp_path, settings):
    """A redis-server of this test's own, which the test may stop and start again (empty) on its port."""
    server = start_redis(tmp_path / "redis")
    settings.JOBCAST = {**settings.JOBCAST, "REDIS_URL": server.url}
    holder = {"server": server}

    def restart():
        holder["server"] = start_redis(tmp_path / "redis", port=server.port)

    yield server, restart
    holder["server"].stop()


def progress(job_id: str, n: int) -> ProgressEvent:
    return ProgressEvent(job_id=job_id, ts=time.time(), current=n, total=100)


def test_a_publish_waits_for_redis_to_come_back_and_numbering_goes_on(own_redis):
    server, restart = own_redis
    publisher = JobPublisher(str(uuid.uuid4()), 1)
    assert publisher.publish_one(progress(publisher.job_id, 1)).seq == 1
    server.stop()  # without persistence: the counter and history are gone
    outcome = {}
    waiting = threading.Thread(target=lambda: outcome.update(seq=publisher.publish_one(progress(publisher.job_id, 2)).seq))
    waiting.start()
    time.sleep(1.0)
    assert waiting.is_alive()  # held, not failed
    restart()
    waiting.join(timeout=10)
    assert outcome == {"seq": 2}  # reseeded above what the handle knew: no seq given twice
    from jobcast.redis_client import get_redis

    assert [e.seq for e in read_history(get_redis(), publisher.job_id, after=1).events] == [2]


def test_a_publish_gives_up_after_the_retry_window(own_redis, settings):
    server, _ = own_redis
    settings.JOBCAST = {**settings.JOBCAST, "REDIS_RETRY_SECONDS": 0.5}
    server.stop()
    publisher = JobPublisher(str(uuid.uuid4()), 1)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="unreachable for 0.5 s"):
        publisher.publish_one(progress(publisher.job_id, 1))
    assert 0.5 <= time.monotonic() - started < 5


def test_a_repeated_publish_whose_reply_was_lost_is_not_run_twice(own_redis):
    """The script ran, the reply never arrived (Redis died just after): the repeat must be a no-op."""
    from jobcast.redis_client import get_redis

    job_id = str(uuid.uuid4())
    entries = [("log", LogEvent(job_id=job_id, ts=1.0, message=f"line {n}").model_dump_json(exclude={"seq"}), 1.0, False)
               for n in range(3)]
    assert _run_script(job_id, [job_group(job_id), user_group(1)], entries, 60, seq_floor=0).seq == 3
    assert _run_script(job_id, [job_group(job_id), user_group(1)], entries, 60, seq_floor=0, repeat=True).seq == 3  # already there: nothing added
    history = read_history(get_redis(), job_id, after=0)
    assert [orjson.loads(e.text)["message"] for e in history.events] == ["line 0", "line 1", "line 2"]
    assert _run_script(job_id, [job_group(job_id), user_group(1)], entries[:1], 60, seq_floor=3, repeat=True).seq == 4  # not run yet: runs


def test_a_job_that_ends_while_redis_is_gone_keeps_its_end(own_redis, user, settings):
    server, restart = own_redis
    settings.JOBCAST = {**settings.JOBCAST, "REDIS_RETRY_SECONDS": 0.3}
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    run = job_start(job.id)
    run.publisher.publish_one(progress(str(job.id), 1))
    server.stop()
    assert job_finish(run, State.SUCCEEDED, result={"counted": 3})  # the end is recorded, not lost
    run.lease.release()
    row = Job.objects.get(id=job.id)
    assert row.state == "succeeded" and row.seq == 3  # the seq its terminal event was to have
    restart()  # back, empty
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")
    events = client.get(f"/api/jobs/{job.id}/events/", {"after": 0}).json()
    assert events == {"events": [], "complete": False}  # history is gone, and the answer says so
    assert client.get(f"/api/jobs/{job.id}/").json()["state"] == "succeeded"


def token_of(user) -> str:
    from jobcast.accounts.services import token_create

    return token_create(user.username)


def test_the_api_answers_503_json_while_redis_is_away_and_creates_no_job(own_redis, user, caplog):
    server, restart = own_redis
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")
    server.stop()
    response = client.post("/api/jobs/", {"kind": "demo.count", "params": {}}, content_type="application/json")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json() == {"detail": "Service unavailable: Redis cannot be reached. Try again shortly.",
                               "errors": []}
    assert Job.objects.count() == 0
    assert Client().get("/readyz").status_code == 503
    # Logged once as a WARNING each; Django's own ERROR line per 5xx would drown real errors.
    assert [r.levelname for r in caplog.records if r.name.startswith("django")] == []
    assert any(r.levelname == "WARNING" and "a dependency is unavailable" in r.getMessage() for r in caplog.records)
    restart()
    again = client.post("/api/jobs/", {"kind": "demo.count", "params": {}}, content_type="application/json")
    assert again.status_code == 201, again.content


def test_a_job_that_cannot_be_queued_is_not_left_half_created(own_redis, user, monkeypatch):
    """Redis dies between the rate check and the enqueue: the row is removed, the caller gets 503."""
    from jobcast.jobs import services

    server, _ = own_redis
    real_enqueue = services.enqueue_job

    def enqueue_after_redis_died(job_id):
        server.stop()
        real_enqueue(job_id)

    monkeypatch.setattr(services, "enqueue_job", enqueue_after_redis_died)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")
    response = client.post("/api/jobs/", {"kind": "demo.count", "params": {}}, content_type="application/json")
    assert response.status_code == 503 and response.json()["detail"].startswith("Service unavailable")
    assert Job.objects.count() == 0


async def close_consumer_connections():
    """Close the database connection the consumer's thread opened (PostgreSQL drops the test database after)."""
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


async def test_a_socket_is_closed_with_1013_while_redis_is_away(own_redis, user):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from jobcast.ws.asgi import application

    server, _ = own_redis
    job = await database_sync_to_async(Job.objects.create)(owner=user, kind="demo.count", params={}, state="running")
    token = await database_sync_to_async(token_of)(user)
    server.stop()
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.id}/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await ws.connect(timeout=30)
    assert connected  # accepted, so that the close code reaches the client
    close = await ws.receive_output(timeout=30)
    assert close["type"] == "websocket.close" and close["code"] == 1013
    await ws.disconnect()
    await close_consumer_connections()


async def test_sockets_are_closed_with_1013_when_redis_stays_away(own_redis, user, settings):
    """The resync sweep notices the outage; after two failed rounds every socket is told to come back later."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from jobcast.ws.asgi import application

    server, _ = own_redis
    settings.JOBCAST = {**settings.JOBCAST, "WS_RESYNC_SECONDS": 0.2}
    job = await database_sync_to_async(Job.objects.create)(owner=user, kind="demo.count", params={}, state="running")
    token = await database_sync_to_async(token_of)(user)
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.id}/", headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await ws.connect(timeout=10))[0]
    assert orjson.loads((await ws.receive_output(timeout=10))["text"])["type"] == "snapshot"
    server.stop()
    close = await ws.receive_output(timeout=30)
    assert close["type"] == "websocket.close" and close["code"] == 1013
    await ws.disconnect()
    await close_consumer_connections()


def test_queued_jobs_a_redis_restart_lost_are_queued_again_once(own_redis, user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from jobcast.jobs.queue import QUEUE
    from jobcast.redis_client import get_redis
    from jobcast.worker.recovery import requeue_lost_jobs

    server, restart = own_redis
    old = [job_submit(user, "demo.count", {"steps": 1})[0] for _ in range(3)]
    Job.objects.filter(id__in=[j.id for j in old]).update(created_at=timezone.now() - timedelta(minutes=5))
    running = Job.objects.create(owner=user, kind="demo.count", state="running",
                                 created_at=timezone.now() - timedelta(minutes=5))
    assert get_redis().llen(QUEUE) == 3
    server.stop()
    restart()  # empty: the three messages are gone
    time.sleep(1.1)  # uptime counts whole seconds
    fresh = job_submit(user, "demo.count", {"steps": 1})[0]  # queued after the restart: its message is there
    assert get_redis().llen(QUEUE) == 1
    assert requeue_lost_jobs() == 3
    queued = [orjson.loads(body)["headers"]["argsrepr"] for body in get_redis().lrange(QUEUE, 0, -1)]
    assert sorted(queued) == sorted([repr([str(j.id)]) for j in [*old, fresh]])
    assert str(running.id) not in "".join(queued)
    assert requeue_lost_jobs() == 0  # once per restart, whichever worker asks


def test_queued_jobs_are_left_alone_when_redis_keeps_its_data(own_redis, user):
    from datetime import timedelta

    from django.utils import timezone

    from jobcast.redis_client import get_redis
    from jobcast.worker.recovery import requeue_lost_jobs

    job = job_submit(user, "demo.count", {"steps": 1})[0]
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(minutes=5))
    get_redis().config_set("appendonly", "yes")  # its messages would have survived a restart
    time.sleep(1.1)
    assert requeue_lost_jobs() == 0
