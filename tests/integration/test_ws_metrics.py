"""The ws tier's metrics, counted by real consumers (WebsocketCommunicator) on real Redis.

Each test reads the samples before and after what it does, so the counts are exact.
"""

from __future__ import annotations

import time

import pytest
from channels.testing import HttpCommunicator
from prometheus_client import REGISTRY

from jobcast import metrics
from tests.integration.test_consumers import (
    bearer,
    closed_with,
    connect,
    events_until_close,
    finish_job,
    make_job,
    progress,
    publish,
    receive,
)
from jobcast.accounts.services import token_create
from jobcast.ws.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]


def sample(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def token(user):
    return token_create(user.username)


async def test_refused_handshakes_are_counted_by_code_and_reason(user, other_user, token):
    job = await make_job(user)
    theirs = await make_job(other_user)
    cases = [
        (f"/ws/jobs/{job.id}/", [], "4401", "not_authenticated"),
        (f"/ws/jobs/{theirs.id}/", bearer(token), "4404", "not_found"),
        ("/ws/nope/", [], "4404", "not_found"),
        (f"/ws/jobs/{job.id}/?after=abc", bearer(token), "1008", "bad_request"),
    ]
    for path, headers, code, reason in cases:
        before = sample("jobcast_ws_handshakes_refused_total", code=code, reason=reason)
        ws = await connect(path, headers)
        assert await closed_with(ws) == int(code)
        assert sample("jobcast_ws_handshakes_refused_total", code=code, reason=reason) == before + 1, path


async def test_limits_are_counted_as_refusals(user, token, settings):
    job = await make_job(user)
    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 1}
    first = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(first)
    before = sample("jobcast_ws_handshakes_refused_total", code="4429", reason="too_many_connections")
    second = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert await closed_with(second) == 4429
    assert sample("jobcast_ws_handshakes_refused_total", code="4429", reason="too_many_connections") == before + 1
    settings.JOBCAST = {**settings.JOBCAST, "WS_MAX_CONNECTIONS_PER_USER": 100, "WS_MAX_CONNECTIONS": 1}
    before = sample("jobcast_ws_handshakes_refused_total", code="1013", reason="overloaded")
    third = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert await closed_with(third) == 1013
    assert sample("jobcast_ws_handshakes_refused_total", code="1013", reason="overloaded") == before + 1
    await first.disconnect()


async def test_connections_opened_and_closed_by_code_and_groups(user, token):
    """A socket that sees its job finish is opened, joins one group, and closes with 1000; one the
    client leaves closes with the client's code; the process's subscriptions go back to where they were."""
    job = await make_job(user, "running")
    opened = sample("jobcast_ws_connections_opened_total")
    finished = sample("jobcast_ws_connections_closed_total", code="1000")
    left = sample("jobcast_ws_connections_closed_total", code="1001")
    joins = sample("jobcast_ws_group_joins_total")
    groups = sample("jobcast_ws_groups")

    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    await receive(ws)
    assert sample("jobcast_ws_connections") >= 1
    assert sample("jobcast_ws_groups") == groups + 1
    await finish_job(job)
    messages, code = await events_until_close(ws)
    assert code == 1000

    other = await connect("/ws/jobs/", bearer(token))
    await other.disconnect(code=1001, timeout=2)  # what a closing browser tab sends

    assert sample("jobcast_ws_connections_opened_total") == opened + 2
    assert sample("jobcast_ws_connections_closed_total", code="1000") == finished + 1
    assert sample("jobcast_ws_connections_closed_total", code="1001") == left + 1
    assert sample("jobcast_ws_group_joins_total") == joins + 2
    assert sample("jobcast_ws_groups") == groups  # both groups left, both unsubscribed


async def test_messages_sent_latency_and_skew(user, token):
    """Live events are counted by type, timed (send and end-to-end), and an event stamped in the
    future (the worker's clock ahead) is counted as skewed instead of observed as 0."""
    job = await make_job(user, "running")
    ws = await connect(f"/ws/jobs/{job.id}/", bearer(token))
    assert (await receive(ws))["type"] == "snapshot"
    sent = sample("jobcast_ws_messages_sent_total", type="progress")
    latency = sample("jobcast_event_latency_seconds_count")
    sends = sample("jobcast_ws_send_duration_seconds_count")
    skewed = sample("jobcast_event_latency_skewed_total")
    zero_bucket = sample("jobcast_event_latency_seconds_bucket", le="0.001")

    await publish(job, progress(job, 1))
    ahead = progress(job, 2).model_copy(update={"ts": time.time() + 30})
    await publish(job, ahead)
    assert [(await receive(ws))["current"] for _ in range(2)] == [1, 2]

    assert sample("jobcast_ws_messages_sent_total", type="progress") == sent + 2
    assert sample("jobcast_ws_send_duration_seconds_count") == sends + 2
    assert sample("jobcast_event_latency_seconds_count") == latency + 1
    assert sample("jobcast_event_latency_skewed_total") == skewed + 1
    assert sample("jobcast_event_latency_seconds_bucket", le="0.001") <= zero_bucket + 1  # not clamped into it
    await ws.disconnect()


async def test_duplicates_are_counted_as_dropped(user, token):
    """The all-jobs stream skips an event its snapshot already covered: counted with reason duplicate."""
    job = await make_job(user, "running")
    await publish(job, progress(job, 1))
    ws = await connect("/ws/jobs/", bearer(token))
    snapshot = await receive(ws)
    assert snapshot["job"]["seq"] == 1
    before = sample("jobcast_ws_messages_dropped_total", reason="duplicate")
    from channels.layers import get_channel_layer
    from jobcast.events.groups import user_group

    # The same seq delivered again (as after a catch-up): not sent, counted.
    await get_channel_layer("jobcast").group_send(user_group(user.id), {
        "type": "job.event", "job_id": str(job.id), "seq": 1, "event": "progress", "text": "{}",
        "ts": time.time(), "terminal": False,
    })
    assert await ws.receive_nothing(timeout=0.3)
    assert sample("jobcast_ws_messages_dropped_total", reason="duplicate") == before + 1
    await ws.disconnect()


async def test_the_ws_metrics_page_has_every_ws_family_even_before_traffic(db):
    response = await HttpCommunicator(application, "GET", "/metrics").get_response(timeout=5)
    body = response["body"].decode()
    for name in ("jobcast_ws_connections ", "jobcast_ws_connections_opened_total ", 'jobcast_ws_handshakes_refused_total{code="4401",reason="not_authenticated"}',
                 'jobcast_ws_connections_closed_total{code="4408"}', 'jobcast_ws_messages_dropped_total{reason="queue_full"}',
                 'jobcast_ws_messages_sent_total{type="state"}', "jobcast_ws_send_duration_seconds_bucket",
                 "jobcast_event_latency_skewed_total ", "jobcast_ws_groups "):
        assert name in body, name
    assert "_created" not in body


def test_loop_histogram_matches_prometheus_bucket_semantics():
    """le is inclusive: an observation equal to a bound lands in that bucket, as prometheus-client does."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    loop = metrics.LoopHistogram((0.1, 1.0))
    registry = CollectorRegistry()
    reference = Histogram("reference_seconds", "x", buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.1, 0.5, 1.0, 3):
        loop.observe(value)
        reference.observe(value)
    family = metrics.LoopMetric.__new__(metrics.LoopMetric)
    family.name, family.documentation, family.labelnames, family.buckets = "reference_seconds", "x", (), (0.1, 1.0)
    family.children = {(): loop}
    ours = {s.name + str(sorted(s.labels.items())): s.value for s in family.family().samples}
    theirs = {s.name + str(sorted(s.labels.items())): s.value for m in registry.collect() for s in m.samples
              if not s.name.endswith("_created")}
    assert ours == theirs
    assert "reference_seconds_bucket" in generate_latest(registry).decode()


def test_an_unknown_close_code_counts_as_other():
    before = sample("jobcast_ws_connections_closed_total", code="other")
    metrics.count_close(3999)
    assert sample("jobcast_ws_connections_closed_total", code="other") == before + 1
