"""Metrics in-process: each tier's endpoint, and the counters on the hot paths."""

from __future__ import annotations

import re
import time

import pytest
from channels.testing import HttpCommunicator
from django.test import Client
from prometheus_client import REGISTRY

from jobcast.jobs.services import job_submit
from jobcast.worker.endpoints import operator_app
from jobcast.worker.runner import run_job

pytestmark = [pytest.mark.django_db(transaction=True)]


def value(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_web_requests_are_counted_by_route_and_status(api_client):
    before = value("jobcast_http_requests_total", route="/api/jobs/", method="GET", status="200")
    assert api_client.get("/api/jobs/").status_code == 200
    assert value("jobcast_http_requests_total", route="/api/jobs/", method="GET", status="200") == before + 1
    api_client.get("/api/jobs/00000000-0000-0000-0000-000000000000/")
    body = Client().get("/metrics").content.decode()
    assert 'jobcast_http_requests_total{method="GET",route="/api/jobs/<job_id>/",status="404"}' in body
    assert "jobcast_http_request_duration_seconds_bucket" in body


def test_running_a_job_counts_it_and_its_events(user):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    finished = value("jobcast_jobs_finished_total", kind="demo.count", state="succeeded")
    progress = value("jobcast_events_published_total", type="progress")
    run_job(str(job.id))
    assert value("jobcast_jobs_finished_total", kind="demo.count", state="succeeded") == finished + 1
    assert value("jobcast_events_published_total", type="progress") >= progress + 1
    assert value("jobcast_job_duration_seconds_count", kind="demo.count", state="succeeded") >= 1


def test_the_worker_endpoints(redis):
    redis.rpush("jobcast", b"a", b"b")
    responses = {}

    def start_response(status, headers):
        responses["status"] = status

    body = b"".join(operator_app({"PATH_INFO": "/metrics"}, start_response)).decode()
    assert responses["status"] == "200 OK"
    assert 'jobcast_queue_depth{queue="jobcast"} 2.0' in body
    assert "jobcast_worker_consumer_up 0.0" in body  # no Celery consumer in this process
    assert b'"status": "ok"' in b"".join(operator_app({"PATH_INFO": "/readyz"}, start_response))
    # /healthz reflects the consumer (tests/e2e/test_worker_health.py runs a real one).
    body = b"".join(operator_app({"PATH_INFO": "/healthz"}, start_response))
    assert responses["status"].startswith("503") and b"the consumer has not started" in body
    operator_app({"PATH_INFO": "/nope"}, start_response)
    assert responses["status"].startswith("404")


async def test_the_ws_tier_exposes_its_metrics(user):
    from jobcast.ws.asgi import application

    response = await HttpCommunicator(application, "GET", "/metrics").get_response(timeout=5)
    assert response["status"] == 200
    body = response["body"].decode()
    for name in ("jobcast_ws_connections", "jobcast_ws_messages_sent_total", "jobcast_event_latency_seconds_bucket"):
        assert name in body


def test_dropped_messages_are_counted():
    """jobcast_ws_messages_dropped_total counts what a full socket queue turned away."""
    from jobcast.ws.layer import SocketQueue

    queue = SocketQueue(capacity=1, marker=b"resync")
    before = value("jobcast_ws_messages_dropped_total", reason="queue_full")
    for n in range(3):
        queue.put_nowait(n)
    assert value("jobcast_ws_messages_dropped_total", reason="queue_full") == before + 2
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [0, b"resync"]


def test_the_lifecycle_counts_submitted_started_running_finished_and_the_wait(user, settings):
    """job_submit, job_start and job_finish (jobcast.jobs.services) count each step once."""
    from jobcast.jobs.services import job_finish, job_start

    labels = {"kind": "demo.count"}
    before = {name: value(name, **labels) for name in (
        "jobcast_jobs_submitted_total", "jobcast_jobs_started_total", "jobcast_job_queue_wait_seconds_count")}
    job, created = job_submit(user, "demo.count", {"steps": 1})
    again, created_again = job_submit(user, "demo.count", {"steps": 1}, idempotency_key="k")
    repeated, _ = job_submit(user, "demo.count", {"steps": 1}, idempotency_key="k")
    assert created and created_again and repeated.id == again.id
    assert value("jobcast_jobs_submitted_total", **labels) == before["jobcast_jobs_submitted_total"] + 2  # not the repeat

    running = value("jobcast_jobs_running", **labels)
    run = job_start(str(job.id))
    assert value("jobcast_jobs_running", **labels) == running + 1
    assert value("jobcast_jobs_started_total", **labels) == before["jobcast_jobs_started_total"] + 1
    assert value("jobcast_job_queue_wait_seconds_count", **labels) == before["jobcast_job_queue_wait_seconds_count"] + 1
    finished = value("jobcast_jobs_finished_total", kind="demo.count", state="failed")
    job_finish(run, "failed")
    assert value("jobcast_jobs_running", **labels) == running  # uncounted, whatever the end
    assert value("jobcast_jobs_finished_total", kind="demo.count", state="failed") == finished + 1


def test_coalesced_progress_and_publish_time_are_counted(user, settings):
    """Progress offered faster than JOBCAST_PROGRESS_MAX_RATE is coalesced: counted once it is dropped."""
    from jobcast.jobs.context import JobContext
    from jobcast.jobs.services import job_publisher

    job, _ = job_submit(user, "demo.count", {"steps": 1})
    coalesced = value("jobcast_progress_coalesced_total")
    publishes = value("jobcast_publish_duration_seconds_count")
    ctx = JobContext(job_publisher(job), cancel_requested=lambda: False, max_rate=1, cancel_check_interval=1)
    for n in range(10):
        ctx.progress(n, 10)  # the first goes out, 1-8 are replaced, 9 is held and sent on close
    ctx.close()
    assert value("jobcast_progress_coalesced_total") == coalesced + 8
    assert value("jobcast_publish_duration_seconds_count") == publishes + 2


def test_the_oldest_queued_job_has_an_age(user, redis, django_capture_on_commit_callbacks):
    from jobcast.metrics import message_age

    with django_capture_on_commit_callbacks(execute=True):
        job_submit(user, "demo.count", {"steps": 1})
    raw = redis.lindex("jobcast", -1)
    assert 0 <= message_age(raw) < 5
    assert 59 < message_age(raw, now=time.time() + 60) < 65

    def start_response(status, headers):
        pass

    body = b"".join(operator_app({"PATH_INFO": "/metrics"}, start_response)).decode()
    assert 'jobcast_queue_depth{queue="jobcast"} 1.0' in body
    assert re.search(r'jobcast_queue_oldest_job_age_seconds\{queue="jobcast"\} \d', body)
    assert message_age(None) == 0 and message_age(b"not json") == 0
