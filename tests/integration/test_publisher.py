"""The one publisher against real Redis and the stock channels_redis layer that the ws tier receives with."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from channels.layers import get_channel_layer

from jobcast.events.groups import ALL_JOBS_GROUP, job_group, user_group
from jobcast.events.history import read_history, read_live
from jobcast.events.publisher import notify_new_job
from tests.support import publish
from jobcast.events.schema import JobDocument, LogEvent, Progress, ProgressEvent, StateEvent


def progress(job_id, n, total=10):
    return ProgressEvent(job_id=job_id, ts=time.time(), current=n, total=total, percent=100 * n / total)


def test_seq_is_contiguous_and_history_keeps_every_event(redis):
    job_id = str(uuid.uuid4())
    seqs = [publish(progress(job_id, n), owner_id=1).seq for n in range(1, 6)]
    seqs.append(publish(LogEvent(job_id=job_id, ts=time.time(), message="hi"), owner_id=1).seq)
    assert seqs == [1, 2, 3, 4, 5, 6]
    history = read_history(redis, job_id, after=0)
    assert history.complete
    assert [orjson.loads(e.text)["seq"] for e in history.events] == [1, 2, 3, 4, 5, 6]
    assert orjson.loads(history.events[-1].text) == {
        "seq": 6, "job_id": job_id, "ts": orjson.loads(history.events[-1].text)["ts"], "type": "log", "message": "hi"
    }
    assert [orjson.loads(e.text)["seq"] for e in read_history(redis, job_id, after=4).events] == [5, 6]


def test_concurrent_publishers_never_share_a_seq(redis):
    from concurrent.futures import ThreadPoolExecutor

    job_id = str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(lambda n: publish(progress(job_id, n), owner_id=1).seq, range(200)))
    assert sorted(seqs) == list(range(1, 201))


def test_trimmed_history_reads_as_incomplete(redis, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job_id = str(uuid.uuid4())
    for n in range(1, 8):
        publish(progress(job_id, n), owner_id=1)
    assert not read_history(redis, job_id, after=0).complete
    tail = read_history(redis, job_id, after=4)
    assert tail.complete and [orjson.loads(e.text)["seq"] for e in tail.events] == [5, 6, 7]
    assert read_history(redis, job_id, after=7).complete


def test_expired_history_is_incomplete_when_the_row_knows_more(redis):
    assert not read_history(redis, str(uuid.uuid4()), after=0, known_seq=5).complete
    assert read_history(redis, str(uuid.uuid4()), after=5, known_seq=5).complete


def test_terminal_event_sets_the_history_ttl(redis, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_TTL": 120}
    job_id = str(uuid.uuid4())
    publish(progress(job_id, 1), owner_id=1)
    assert redis.ttl(f"jobcast:job:{job_id}:events") > 120
    publish(StateEvent(job_id=job_id, ts=time.time(), state="succeeded", result={"ok": 1}), owner_id=1)
    assert 0 < redis.ttl(f"jobcast:job:{job_id}:events") <= 120


def test_live_snapshot_follows_the_latest_progress_and_state(redis):
    job_id = str(uuid.uuid4())
    publish(StateEvent(job_id=job_id, ts=time.time(), state="running"), owner_id=1)
    publish(progress(job_id, 3), owner_id=1)
    publish(LogEvent(job_id=job_id, ts=time.time(), message="x"), owner_id=1)
    (live,) = read_live(redis, [job_id])
    assert live.seq == 3
    assert live.progress["current"] == 3 and live.state["state"] == "running"


async def test_the_stock_channels_redis_pubsub_layer_receives_published_events(redis_server):
    """Pins the publisher's fan-out to the installed channels_redis's own pub/sub layer."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    job_id = str(uuid.uuid4())
    watcher_a, watcher_b, owner_stream, staff_stream, other_owner = [await layer.new_channel() for _ in range(5)]
    await layer.group_add(job_group(job_id), watcher_a)
    await layer.group_add(job_group(job_id), watcher_b)
    await layer.group_add(user_group(7), owner_stream)
    await layer.group_add(ALL_JOBS_GROUP, staff_stream)
    await layer.group_add(user_group(8), other_owner)
    await asyncio.sleep(0.2)  # the stock layer does not wait for its SUBSCRIBE to be confirmed

    published = await asyncio.to_thread(publish, progress(job_id, 1), 7)
    assert published.seq == 1 and published.receivers == 3  # one process, in the three groups

    for channel in (watcher_a, watcher_b, owner_stream, staff_stream):
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert message["type"] == "job.event"
        assert message["seq"] == 1 and message["job_id"] == job_id and message["event"] == "progress"
        assert orjson.loads(message["text"])["current"] == 1

    document = JobDocument(id=job_id, kind="demo.count", params={}, state="queued", progress=Progress(), seq=0,
                           attempts=0, created_at="2026-01-01T00:00:00Z")
    await asyncio.to_thread(notify_new_job, 7, "alice", document)
    message = await asyncio.wait_for(layer.receive(owner_stream), 5)
    assert message["type"] == "job.snapshot" and message["terminal"] is False
    assert orjson.loads(message["text"]) == {"type": "snapshot", "job": document.model_dump(mode="json"), "reset": False}
    # The staff stream gets the same snapshot with the owner's username.
    message = await asyncio.wait_for(layer.receive(staff_stream), 5)
    assert message["type"] == "job.snapshot"
    assert orjson.loads(message["text"]) == {
        "type": "snapshot", "job": document.model_dump(mode="json"), "reset": False, "owner": "alice"}
    # Another user's stream got nothing of this job.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(other_owner), 0.3)
    await layer.flush()


async def stock_watcher(redis_server):
    """The stock pub/sub layer with one socket channel in a new job's group: (layer, job id, channel)."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    job_id = str(uuid.uuid4())
    watcher = await layer.new_channel()
    await layer.group_add(job_group(job_id), watcher)
    await asyncio.sleep(0.2)  # the stock layer does not wait for its SUBSCRIBE to be confirmed
    return layer, job_id, watcher


async def test_several_events_go_out_as_one_batch_message(redis_server):
    """Several events in one publish: seqs in order, every event in history, one job.batch per group."""
    layer, job_id, watcher = await stock_watcher(redis_server)
    events = [progress(job_id, 1), LogEvent(job_id=job_id, ts=time.time(), message="two"), progress(job_id, 3)]
    published = await asyncio.to_thread(publish, events, 7)
    assert published.seq == 3 and published.receivers == 1
    batch = await asyncio.wait_for(layer.receive(watcher), 5)
    assert batch["type"] == "job.batch"
    assert [(m["seq"], m["event"], m["type"]) for m in batch["messages"]] == [
        (1, "progress", "job.event"), (2, "log", "job.event"), (3, "progress", "job.event")]
    assert orjson.loads(batch["messages"][1]["text"]) == {
        "seq": 2, "job_id": job_id, "ts": events[1].ts, "type": "log", "message": "two"}
    history = read_history(layer_redis(), job_id, after=0)
    assert [orjson.loads(e.text)["seq"] for e in history.events] == [1, 2, 3]
    (live,) = read_live(layer_redis(), [job_id])
    assert live.seq == 3 and live.progress["current"] == 3 and live.state is None
    await layer.flush()


async def test_a_full_socket_queue_drops_and_queues_one_resync_marker(redis_server):
    from prometheus_client import REGISTRY

    from jobcast.ws.layer import RESYNC

    layer = get_channel_layer("jobcast")
    layer._get_layer().capacity = 2
    job_id = str(uuid.uuid4())
    channel = await layer.new_channel()
    await layer.group_add(job_group(job_id), channel)
    await asyncio.sleep(0.2)  # SUBSCRIBE confirmed
    dropped = REGISTRY.get_sample_value("jobcast_ws_messages_dropped_total", {"reason": "queue_full"}) or 0
    for n in range(1, 6):
        await asyncio.to_thread(publish, progress(job_id, n), 1)
    await asyncio.sleep(0.2)  # all five reached the process; nobody read the socket's queue
    batch = await asyncio.wait_for(layer.receive(channel), 5)  # what was queued, in one message
    assert batch["type"] == "job.batch"
    received = batch["messages"]
    assert [m.get("seq") for m in received[:2]] == [1, 2] and received[2:] == [RESYNC]
    assert REGISTRY.get_sample_value("jobcast_ws_messages_dropped_total", {"reason": "queue_full"}) == dropped + 3
    # The dropped events are still in history, where the socket catches up from.
    assert [orjson.loads(e.text)["seq"] for e in read_history(layer_redis(), job_id, 0).events] == [1, 2, 3, 4, 5]
    await layer.flush()


def layer_redis():
    from jobcast.redis_client import get_redis

    return get_redis()


def test_a_lost_seq_counter_resumes_above_the_known_seq(redis):
    """Redis restarted without persistence: numbering continues above what the row knew."""
    job_id = str(uuid.uuid4())
    assert [publish(progress(job_id, n), 1).seq for n in range(3)] == [1, 2, 3]
    redis.flushdb()  # the counter, history and live snapshot are gone
    assert publish(progress(job_id, 4), 1, seq_floor=3).seq == 4
    assert publish(progress(job_id, 5), 1, seq_floor=3).seq == 5  # the floor only seeds a missing counter
    history = read_history(redis, job_id, after=0, known_seq=3)
    assert not history.complete  # seqs 1..3 are gone: a resuming client gets a reset snapshot


async def test_a_storm_of_group_calls_costs_one_subscription(redis_server):
    """300 sockets joining and leaving one group at once: none fails; the process subscribes
    once, and unsubscribes when the last one leaves (nothing is left behind in Redis)."""
    layer = get_channel_layer("jobcast")
    redis = layer_redis()
    channel_name = layer._get_layer()._get_group_channel_name("storm")
    channels = [await layer.new_channel() for _ in range(300)]
    assert await asyncio.to_thread(redis.pubsub_numsub, *channels[:3]) == [(c.encode(), 0) for c in channels[:3]]
    await asyncio.gather(*(layer.group_add("storm", channel) for channel in channels))
    await asyncio.sleep(0.2)
    assert await asyncio.to_thread(redis.pubsub_numsub, channel_name) == [(channel_name.encode(), 1)]
    await asyncio.gather(*(layer.group_discard("storm", channel) for channel in channels))
    await asyncio.sleep(0.2)
    assert await asyncio.to_thread(redis.pubsub_numsub, channel_name) == [(channel_name.encode(), 0)]
    await layer.flush()


async def test_the_publisher_marks_the_terminal_event_for_every_reader(redis_server):
    """Live messages carry `terminal`, and history entries keep it: no reader looks inside the JSON."""
    layer, job_id, watcher = await stock_watcher(redis_server)
    events = [StateEvent(job_id=job_id, ts=time.time(), state="running"), progress(job_id, 1),
              LogEvent(job_id=job_id, ts=time.time(), message='"state":"failed"'),  # a log that looks terminal
              StateEvent(job_id=job_id, ts=time.time(), state="failed", error={"type": "X", "message": "y"})]
    await asyncio.to_thread(publish, events, 7)
    batch = await asyncio.wait_for(layer.receive(watcher), 5)
    assert [m["terminal"] for m in batch["messages"]] == [False, False, False, True]
    history = read_history(layer_redis(), job_id, after=0)
    assert [(e.seq, e.type, e.terminal) for e in history.events] == [
        (1, "state", False), (2, "progress", False), (3, "log", False), (4, "state", True)]
    await layer.flush()


def test_history_written_before_entries_carried_their_type_still_reads(redis):
    """A rolling upgrade: entries without the type and terminal fields are read from their JSON."""
    job_id = str(uuid.uuid4())
    text = orjson.dumps({"seq": 1, "job_id": job_id, "ts": 1.0, "type": "state", "state": "cancelled",
                         "result": None, "error": None}).decode()
    redis.xadd(f"jobcast:job:{job_id}:events", {"e": text}, id="1-0")
    (event,) = read_history(redis, job_id, after=0).events
    assert (event.seq, event.type, event.terminal, event.text) == (1, "state", True, text)
