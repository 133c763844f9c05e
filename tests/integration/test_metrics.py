"""Metrics in-process: each tier's endpoint, and the counters on the hot paths."""

from __future__ import annotations


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
    finished = value("jobcast_jobs_total", kind="demo.count", state="succeeded")
    progress = value("jobcast_events_published_total", type="progress")
    run_job(str(job.id))
    assert value("jobcast_jobs_total", kind="demo.count", state="succeeded") == finished + 1
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
    for path in ("/healthz", "/readyz"):
        assert b'"status": "ok"' in b"".join(operator_app({"PATH_INFO": path}, start_response))
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
    before = value("jobcast_ws_messages_dropped_total")
    for n in range(3):
        queue.put_nowait(n)
    assert value("jobcast_ws_messages_dropped_total") == before + 2
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [0, b"resync"]
