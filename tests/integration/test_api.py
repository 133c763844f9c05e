"""The HTTP API against real Redis and the database: every row and every 4xx of the contract."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client

from jobcast.events.publisher import publish_event
from jobcast.events.schema import LogEvent, ProgressEvent, StateEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import cancel_requested, job_transition

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

JOB_FIELDS = {"id", "kind", "params", "state", "progress", "seq", "result", "error", "attempts",
              "created_at", "started_at", "finished_at"}


def submit(client, body=None, **headers):
    body = body if body is not None else {"kind": "demo.count", "params": {"steps": 5}}
    return client.post("/api/jobs/", data=json.dumps(body), content_type="application/json", headers=headers)


def assert_error(response, status: int):
    assert response.status_code == status, response.content
    assert response["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str) and isinstance(body["errors"], list)
    assert "Traceback" not in response.content.decode()
    return body


# --- submit --------------------------------------------------------------------------------

def test_submit_returns_the_whole_job(api_client):
    response = submit(api_client)
    assert response.status_code == 201
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert job["kind"] == "demo.count" and job["state"] == "queued" and job["seq"] == 0 and job["attempts"] == 0
    assert job["params"] == {"steps": 5, "interval_ms": 0, "fail_at": None}
    assert job["progress"] == {"current": 0, "total": None, "percent": None, "message": None}
    assert job["result"] is None and job["error"] is None
    assert job["created_at"].endswith("Z") and job["started_at"] is None and job["finished_at"] is None
    assert Job.objects.filter(id=job["id"]).exists()


@pytest.mark.parametrize(
    "body,loc",
    [
        ({"kind": "nope", "params": {}}, ["body", "kind"]),
        ({"kind": "demo.count", "params": {"steps": 0}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": "x"}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"interval_ms": 60_001}}, ["body", "params", "interval_ms"]),
        ({"kind": "demo.count", "params": [1]}, ["body", "body", "params"]),
        ({"params": {}}, ["body", "body", "kind"]),
        ({"kind": "demo.count", "params": {}, "extra": 1}, ["body", "body", "extra"]),
    ],
)
def test_bad_submissions_are_400_with_field_errors(api_client, body, loc):
    errors = assert_error(submit(api_client, body), 400)["errors"]
    assert any(e["loc"][-len(loc[-1:]):] == loc[-1:] for e in errors), errors
    assert Job.objects.count() == 0


def test_malformed_json_is_400(api_client):
    response = api_client.post("/api/jobs/", data="{not json", content_type="application/json")
    assert_error(response, 400)


def test_idempotency_key_returns_the_first_job_for_the_same_user(api_client, other_client):
    first = submit(api_client, **{"Idempotency-Key": "k-1"})
    again = submit(api_client, {"kind": "demo.count", "params": {"steps": 9}}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    theirs = submit(other_client, **{"Idempotency-Key": "k-1"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert_error(submit(api_client, **{"Idempotency-Key": "x" * 256}), 400)


def test_unauthenticated_and_bad_tokens_are_401(db):
    assert_error(submit(Client()), 401)
    assert_error(submit(Client(HTTP_AUTHORIZATION="Bearer jc_not-a-token")), 401)
    assert_error(Client(HTTP_AUTHORIZATION="Bearer nope").get("/api/jobs/"), 401)


def test_a_body_over_the_limit_is_413(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "MAX_BODY_BYTES": 2048}
    body = {"kind": "demo.count", "params": {"pad": "x" * 4096}}
    assert_error(submit(api_client, body), 413)


def test_too_many_submissions_are_429_with_retry_after(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "SUBMIT_RATE_PER_MINUTE": 3}
    assert [submit(api_client).status_code for _ in range(3)] == [201, 201, 201]
    response = submit(api_client)
    assert_error(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 61
    assert Job.objects.count() == 3


# --- list and detail ---------------------------------------------------------------------

def test_list_is_newest_first_and_the_cursor_walks_every_job_once(api_client, other_client):
    ids = [submit(api_client).json()["id"] for _ in range(5)]
    submit(other_client)
    seen, cursor = [], None
    while True:
        page = api_client.get("/api/jobs/", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters_by_state(api_client, user):
    queued, running = submit(api_client).json(), submit(api_client).json()
    assert job_transition(running["id"], "running")
    items = api_client.get("/api/jobs/", {"state": "running"}).json()["items"]
    assert [j["id"] for j in items] == [running["id"]] and items[0]["state"] == "running"
    assert [j["id"] for j in api_client.get("/api/jobs/", {"state": "queued"}).json()["items"]] == [queued["id"]]


@pytest.mark.parametrize("query", [{"state": "sleeping"}, {"limit": 0}, {"limit": 1000}, {"limit": "abc"}, {"cursor": "garbage!"}])
def test_bad_list_queries_are_400(api_client, query):
    assert_error(api_client.get("/api/jobs/", query), 400)


def test_detail_and_404_for_missing_foreign_or_malformed_ids(api_client, other_client):
    job = submit(api_client).json()
    assert api_client.get(f"/api/jobs/{job['id']}/").json()["id"] == job["id"]
    bodies = [
        assert_error(other_client.get(f"/api/jobs/{job['id']}/"), 404),
        assert_error(api_client.get(f"/api/jobs/{uuid.uuid4()}/"), 404),
        assert_error(api_client.get("/api/jobs/not-a-uuid/"), 404),
    ]
    assert bodies[0] == bodies[1] == bodies[2]
    assert_error(Client().get(f"/api/jobs/{job['id']}/"), 401)


def test_detail_shows_live_progress_without_a_database_write(api_client):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running")
    publish_event(StateEvent(job_id=job["id"], ts=time.time(), state="running"), Job.objects.get(id=job["id"]).owner_id)
    publish_event(ProgressEvent(job_id=job["id"], ts=time.time(), current=3, total=4, percent=75.0), Job.objects.get(id=job["id"]).owner_id)
    detail = api_client.get(f"/api/jobs/{job['id']}/").json()
    assert detail["seq"] == 2 and detail["progress"]["current"] == 3 and detail["progress"]["percent"] == 75.0
    assert Job.objects.get(id=job["id"]).seq == 0  # the row was not written per event


# --- cancel --------------------------------------------------------------------------------

def test_cancel_a_queued_job(api_client):
    job = submit(api_client).json()
    response = api_client.post(f"/api/jobs/{job['id']}/cancel/")
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    events = api_client.get(f"/api/jobs/{job['id']}/events/").json()["events"]
    assert [(e["seq"], e["type"], e["state"]) for e in events] == [(1, "state", "cancelled")]
    assert_error(api_client.post(f"/api/jobs/{job['id']}/cancel/"), 409)


def test_cancel_a_running_job_sets_the_flag_and_answers_202(api_client):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running")
    response = api_client.post(f"/api/jobs/{job['id']}/cancel/")
    assert response.status_code == 202 and response.json()["state"] == "running"
    assert cancel_requested(job["id"])


def test_cancel_errors(api_client, other_client):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running") and job_transition(job["id"], "succeeded")
    assert_error(api_client.post(f"/api/jobs/{job['id']}/cancel/"), 409)
    assert_error(other_client.post(f"/api/jobs/{job['id']}/cancel/"), 404)
    assert_error(Client().post(f"/api/jobs/{job['id']}/cancel/"), 401)


# --- events --------------------------------------------------------------------------------

def publish_some(job, n):
    owner = Job.objects.get(id=job["id"]).owner_id
    for i in range(1, n + 1):
        publish_event(LogEvent(job_id=job["id"], ts=time.time(), message=f"line {i}"), owner)


def test_events_after_n_in_order(api_client):
    job = submit(api_client).json()
    publish_some(job, 6)
    body = api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 3}).json()
    assert body["complete"] is True
    assert [e["seq"] for e in body["events"]] == [4, 5, 6]
    assert body["events"][0] == {**body["events"][0], "type": "log", "message": "line 4", "job_id": job["id"]}
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 6}).json() == {"events": [], "complete": True}


def test_events_trimmed_from_history_are_incomplete(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job = submit(api_client).json()
    publish_some(job, 8)
    body = api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 0}).json()
    assert body["complete"] is False and [e["seq"] for e in body["events"]] == [6, 7, 8]
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 5}).json()["complete"] is True


def test_events_errors(api_client, other_client):
    job = submit(api_client).json()
    assert_error(api_client.get(f"/api/jobs/{job['id']}/events/", {"after": -1}), 400)
    assert_error(api_client.get(f"/api/jobs/{job['id']}/events/", {"after": "abc"}), 400)
    assert_error(other_client.get(f"/api/jobs/{job['id']}/events/"), 404)
    assert_error(Client().get(f"/api/jobs/{job['id']}/events/"), 401)


# --- kinds, tickets, schema, sessions, errors ------------------------------------------------

def test_kinds_publish_their_json_schema(api_client):
    kinds = {k["name"]: k for k in api_client.get("/api/kinds/").json()}
    steps = kinds["demo.count"]["params_schema"]["properties"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["default"]) == (1, 1_000_000, 100)
    assert {"interval_ms", "fail_at"} <= set(kinds["demo.count"]["params_schema"]["properties"])
    assert "maintenance.prune_jobs" in kinds and kinds["demo.count"]["title"]
    assert_error(Client().get("/api/kinds/"), 401)


def test_ws_tickets_are_short_lived(api_client):
    response = api_client.post("/api/ws-tickets/")
    assert response.status_code == 201
    body = response.json()
    assert len(body["ticket"]) >= 32 and 0 < body["expires_in"] <= 60
    assert_error(Client().post("/api/ws-tickets/"), 401)


def test_openapi_schema_lists_every_route(db):
    schema = Client().get("/api/schema/").json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/jobs/", "/api/jobs/{job_id}/", "/api/jobs/{job_id}/cancel/", "/api/jobs/{job_id}/events/",
            "/api/kinds/", "/api/ws-tickets/"} <= set(schema["paths"])


def test_session_auth_reads_and_needs_csrf_to_write(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/jobs/").status_code == 200
    body = json.dumps({"kind": "demo.count", "params": {}})
    refused = client.post("/api/jobs/", data=body, content_type="application/json")
    assert refused.status_code == 403 and refused["content-type"].startswith("application/json")
    client.get("/api/docs/")  # any page; sets nothing, so make the token explicitly
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    accepted = client.post("/api/jobs/", data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert accepted.status_code == 201


def test_unknown_paths_and_server_errors_are_json(api_client, monkeypatch):
    assert_error(api_client.get("/api/nothing-here/"), 404)
    assert_error(api_client.get("/nothing-here/"), 404)

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("jobcast.web.api.job_list_for_user", explode)
    body = assert_error(api_client.get("/api/jobs/"), 500)
    assert "secret internals" not in json.dumps(body)


def test_health_endpoints(db):
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
