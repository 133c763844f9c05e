"""The HTTP API (docs/protocol.md, "HTTP API") against real Redis and the database: every row and every error.

No worker runs here: a submitted job stays queued unless a test moves it with
`job_transition` (the one state-changing function) and gives it events through a job's publish handle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client

from tests.support import publish
from jobcast.cli.stack import free_port
from jobcast.conf import option
from jobcast.events.schema import LogEvent, ProgressEvent, StateEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_cancel_requested, job_transition

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

JOB_FIELDS = {"id", "kind", "params", "state", "progress", "seq", "result", "error", "attempts",
              "created_at", "started_at", "finished_at"}
COUNT_DEFAULTS = {"steps": 100, "interval_ms": 0, "fail_at": None, "log_every": 0}


def submit(client, body=None, **headers):
    body = body if body is not None else {"kind": "demo.count", "params": {"steps": 5}}
    return client.post("/api/jobs/", data=json.dumps(body), content_type="application/json", headers=headers)


def assert_error(response, status: int) -> dict:
    """The contract's error body: JSON `{"detail": str, "errors": list}`, never HTML or a traceback."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    text = response.content.decode()
    assert "Traceback" not in text and "<html" not in text.lower()
    body = response.json()
    assert set(body) == {"detail", "errors"}, body
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["errors"], list)
    return body


def error_locs(response, status: int = 400) -> list:
    return [e["loc"] for e in assert_error(response, status)["errors"]]


def parse_utc(value: str) -> datetime:
    """An ISO 8601 timestamp in UTC (with its offset written as Z or +00:00)."""
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def owner_of(job: dict) -> int:
    return Job.objects.get(id=job["id"]).owner_id


def log_lines(job: dict, n: int) -> None:
    owner = owner_of(job)
    for i in range(1, n + 1):
        publish(LogEvent(job_id=job["id"], ts=time.time(), message=f"line {i}"), owner)


def walk(client, **query) -> list[list[str]]:
    """Follow `next` from the first page to the last; the ids of every page."""
    pages, cursor = [], None
    while True:
        response = client.get("/api/jobs/", {**query, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        page = response.json()
        assert set(page) == {"items", "next"}
        pages.append([job["id"] for job in page["items"]])
        cursor = page["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor does not end"


def csrf_session(user):
    """A browser-like client: logged in, CSRF enforced, with a CSRF cookie and its token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    return client, token


# --- POST /api/jobs/ ------------------------------------------------------------------------

def test_submit_answers_201_with_the_whole_job(api_client):
    before = datetime.now(timezone.utc)
    response = submit(api_client)
    assert response.status_code == 201, response.content
    assert response["Content-Type"].startswith("application/json")
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert uuid.UUID(job["id"])
    assert job["kind"] == "demo.count"
    assert job["params"] == {**COUNT_DEFAULTS, "steps": 5}  # defaults filled in
    assert job["state"] == "queued" and job["seq"] == 0 and job["attempts"] == 0
    assert job["progress"] == {"current": 0, "total": None, "percent": None, "message": None}
    assert job["result"] is None and job["error"] is None
    assert before - timedelta(seconds=1) <= parse_utc(job["created_at"]) <= datetime.now(timezone.utc)
    assert job["started_at"] is None and job["finished_at"] is None
    row = Job.objects.get(id=job["id"])
    assert row.owner.username == "alice" and row.state == "queued" and row.params == job["params"]


def test_submit_without_params_takes_every_default(api_client):
    response = submit(api_client, {"kind": "demo.count"})
    assert response.status_code == 201 and response.json()["params"] == COUNT_DEFAULTS
    prune = submit(api_client, {"kind": "maintenance.prune_jobs", "params": {"dry_run": True}})
    assert prune.status_code == 201, prune.content
    assert prune.json()["kind"] == "maintenance.prune_jobs"
    assert prune.json()["params"] == {"older_than_days": 30, "dry_run": True}


def test_a_submitted_job_is_enqueued_for_a_worker_once_committed(api_client, redis, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(api_client).json()
    (message,) = [json.loads(m) for m in redis.lrange("jobcast", 0, -1)]
    assert message["headers"]["task"] == "jobcast.run_job"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == [job["id"]]


@pytest.mark.parametrize(
    "body,loc",
    [
        ({"kind": "nope", "params": {}}, ["body", "kind"]),
        ({"kind": "", "params": {}}, ["body", "kind"]),
        ({"kind": 5, "params": {}}, ["body", "kind"]),
        ({"params": {}}, ["body", "kind"]),
        ({"kind": "demo.count", "params": [1]}, ["body", "params"]),
        ({"kind": "demo.count", "params": "steps=5"}, ["body", "params"]),
        ({"kind": "demo.count", "params": None}, ["body", "params"]),
        ({"kind": "demo.count", "params": {"steps": 0}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": -3}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": 1_000_001}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": "x"}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": 2.5}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"interval_ms": -1}}, ["body", "params", "interval_ms"]),
        ({"kind": "demo.count", "params": {"interval_ms": 60_001}}, ["body", "params", "interval_ms"]),
        ({"kind": "demo.count", "params": {"fail_at": "x"}}, ["body", "params", "fail_at"]),
        # Strict by default: no coercion from another JSON type, no unknown keys dropped.
        ({"kind": "demo.count", "params": {"steps": "5"}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": True}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": 5.0}}, ["body", "params", "steps"]),
        ({"kind": "demo.count", "params": {"steps": 5, "stpes": 6}}, ["body", "params", "stpes"]),
        ({"kind": "maintenance.prune_jobs", "params": {"dry_run": "yes"}}, ["body", "params", "dry_run"]),
        ({"kind": "files.checksum", "params": {"paths": "a.txt"}}, ["body", "params", "paths"]),
        ({"kind": "maintenance.prune_jobs", "params": {"older_than_days": -1}}, ["body", "params", "older_than_days"]),
        ({"kind": "demo.count", "params": {}, "extra": 1}, ["body", "extra"]),
        ([{"kind": "demo.count"}], ["body"]),
        ("demo.count", ["body"]),
    ],
)
def test_bad_submissions_are_400_with_field_errors(api_client, body, loc):
    response = submit(api_client, body)
    assert loc in error_locs(response), response.content
    assert Job.objects.count() == 0


def test_strict_params_name_the_type_and_the_unknown_key(api_client):
    errors = submit(api_client, {"kind": "demo.count", "params": {"steps": "5", "colour": "red"}}).json()["errors"]
    assert sorted((e["loc"][-1], e["type"]) for e in errors) == [("colour", "extra_forbidden"), ("steps", "int_type")]


def test_a_kind_that_opts_out_of_strict_params_coerces_and_ignores_as_pydantic_does(api_client):
    from jobcast.jobs.registry import load_builtin_kinds

    load_builtin_kinds("tests.sample_kinds")
    response = submit(api_client, {"kind": "sample.lenient", "params": {"times": "3", "unknown": 1}})
    assert response.status_code == 201 and response.json()["params"] == {"times": 3}
    kinds = {k["name"]: k for k in api_client.get("/api/kinds/").json()}
    assert kinds["sample.lenient"]["params_schema"].get("additionalProperties") is None
    assert kinds["demo.count"]["params_schema"]["additionalProperties"] is False  # strict kinds say so


@pytest.mark.parametrize(
    "data,content_type",
    [
        ("{not json", "application/json"),
        ('{"kind": "demo.count", "params": {"steps": NaN}}', "application/json"),  # not JSON, JavaScript
        ('{"kind": "demo.count"', "application/json"),
        ("kind=demo.count", "application/x-www-form-urlencoded"),
    ],
)
def test_a_body_that_is_not_json_is_400(api_client, data, content_type):
    response = api_client.post("/api/jobs/", data=data, content_type=content_type)
    assert error_locs(response) == [["body"]]
    assert Job.objects.count() == 0


def test_an_empty_body_is_400(api_client):
    assert error_locs(api_client.post("/api/jobs/", data="", content_type="application/json")) == [["body"]]


def test_the_same_idempotency_key_returns_the_first_job(api_client):
    first = submit(api_client, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 201
    again = submit(api_client, {"kind": "demo.count", "params": {"steps": 9}}, **{"Idempotency-Key": "order-42"})
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"] and again.json()["params"]["steps"] == 5
    assert set(again.json()) == JOB_FIELDS
    assert Job.objects.filter(owner__username="alice").count() == 1
    # Another key, or no key, is another job.
    assert submit(api_client, **{"Idempotency-Key": "order-43"}).status_code == 201
    assert submit(api_client).status_code == 201
    assert Job.objects.filter(owner__username="alice").count() == 3


def test_an_idempotency_key_is_per_user(api_client, other_client):
    mine = submit(api_client, **{"Idempotency-Key": "k-1"})
    theirs = submit(other_client, **{"Idempotency-Key": "k-1"})
    assert mine.status_code == 201 and theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert Job.objects.get(id=theirs.json()["id"]).owner.username == "bob"


def test_an_idempotent_replay_is_not_rate_limited(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "SUBMIT_RATE_PER_MINUTE": 1}
    first = submit(api_client, **{"Idempotency-Key": "once"})
    assert first.status_code == 201
    assert_error(submit(api_client), 429)
    replay = submit(api_client, **{"Idempotency-Key": "once"})
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_a_malformed_idempotency_key_is_400(api_client, key):
    assert error_locs(submit(api_client, **{"Idempotency-Key": key})) == [["header", "Idempotency-Key"]]
    assert Job.objects.count() == 0


def test_a_255_character_idempotency_key_is_accepted(api_client):
    assert submit(api_client, **{"Idempotency-Key": "k" * 255}).status_code == 201


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer jc_not-a-token", "Bearer ", "Bearer", "Token jc_x", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="],
)
def test_submit_without_valid_credentials_is_401(db, authorization):
    client = Client(HTTP_AUTHORIZATION=authorization) if authorization is not None else Client()
    assert_error(submit(client), 401)
    assert Job.objects.count() == 0


def test_a_token_of_an_inactive_user_is_401(api_client, user):
    user.is_active = False
    user.save()
    assert_error(submit(api_client), 401)
    assert_error(api_client.get("/api/jobs/"), 401)


def test_a_body_over_the_default_limit_is_413(api_client, settings):
    limit = option("MAX_BODY_BYTES")
    body = {"kind": "demo.count", "params": {"pad": "x" * limit}}
    assert_error(submit(api_client, body), 413)
    assert Job.objects.count() == 0


def test_the_body_limit_is_max_body_bytes(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "MAX_BODY_BYTES": 2048}
    just_under = {"kind": "files.checksum", "params": {"paths": ["x" * 1900]}}
    assert len(json.dumps(just_under)) <= 2048
    assert submit(api_client, just_under).status_code == 201
    over = {"kind": "files.checksum", "params": {"paths": ["x" * 2100]}}
    assert_error(submit(api_client, over), 413)
    assert Job.objects.count() == 1


def test_too_many_submissions_are_429_with_retry_after(api_client, other_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "SUBMIT_RATE_PER_MINUTE": 3}
    assert [submit(api_client).status_code for _ in range(3)] == [201, 201, 201]
    response = submit(api_client)
    assert_error(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 61
    assert Job.objects.filter(owner__username="alice").count() == 3
    assert submit(other_client).status_code == 201  # the limit is per user


# --- GET /api/jobs/ -------------------------------------------------------------------------

def test_an_empty_list(api_client):
    response = api_client.get("/api/jobs/")
    assert response.status_code == 200 and response.json() == {"items": [], "next": None}


def test_the_list_is_newest_first_with_whole_jobs(api_client):
    ids = [submit(api_client).json()["id"] for _ in range(3)]
    page = api_client.get("/api/jobs/").json()
    assert [job["id"] for job in page["items"]] == ids[::-1] and page["next"] is None
    assert all(set(job) == JOB_FIELDS for job in page["items"])
    assert page["items"][0] == api_client.get(f"/api/jobs/{ids[-1]}/").json()


def test_the_cursor_walks_every_job_exactly_once(api_client, other_client):
    ids = [submit(api_client).json()["id"] for _ in range(5)]
    submit(other_client)
    pages = walk(api_client, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == ids[::-1]


def test_a_last_full_page_has_no_next(api_client):
    ids = [submit(api_client).json()["id"] for _ in range(4)]
    pages = walk(api_client, limit=2)
    assert [len(p) for p in pages] == [2, 2] and sum(pages, []) == ids[::-1]


def test_the_cursor_is_exact_when_jobs_share_a_creation_time(api_client):
    ids = [submit(api_client).json()["id"] for _ in range(7)]
    Job.objects.update(created_at=datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc))
    pages = walk(api_client, limit=3)
    seen = sum(pages, [])
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert seen == sorted(ids, key=uuid.UUID, reverse=True)


def test_the_default_page_is_20_and_limit_goes_up_to_100(api_client, user):
    Job.objects.bulk_create([Job(owner=user, kind="demo.count", params=COUNT_DEFAULTS) for _ in range(25)])
    default = api_client.get("/api/jobs/").json()
    assert len(default["items"]) == 20 and default["next"] is not None
    assert len(api_client.get("/api/jobs/", {"cursor": default["next"]}).json()["items"]) == 5
    everything = api_client.get("/api/jobs/", {"limit": 100}).json()
    assert len(everything["items"]) == 25 and everything["next"] is None


def test_the_list_filters_by_state(api_client):
    queued, running, done = (submit(api_client).json() for _ in range(3))
    assert job_transition(running["id"], "running")
    assert job_transition(done["id"], "running") and job_transition(done["id"], "succeeded", result={"counted": 5})
    items = api_client.get("/api/jobs/", {"state": "running"}).json()["items"]
    assert [j["id"] for j in items] == [running["id"]] and items[0]["state"] == "running"
    assert [j["id"] for j in api_client.get("/api/jobs/", {"state": "queued"}).json()["items"]] == [queued["id"]]
    succeeded = api_client.get("/api/jobs/", {"state": "succeeded"}).json()["items"]
    assert [j["id"] for j in succeeded] == [done["id"]] and succeeded[0]["result"] == {"counted": 5}
    assert api_client.get("/api/jobs/", {"state": "failed"}).json() == {"items": [], "next": None}


def test_the_state_filter_and_the_cursor_together(api_client):
    ids = [submit(api_client).json()["id"] for _ in range(6)]
    running = ids[::2]
    for job_id in running:
        assert job_transition(job_id, "running")
    pages = walk(api_client, state="running", limit=2)
    assert sum(pages, []) == running[::-1] and [len(p) for p in pages] == [2, 1]


def test_other_users_jobs_never_appear(api_client, other_client):
    mine = {submit(api_client).json()["id"] for _ in range(3)}
    theirs = {submit(other_client).json()["id"] for _ in range(2)}
    assert {j["id"] for j in api_client.get("/api/jobs/").json()["items"]} == mine
    assert set(sum(walk(other_client, limit=1), [])) == theirs
    assert {j["id"] for j in other_client.get("/api/jobs/", {"state": "queued"}).json()["items"]} == theirs


def test_empty_query_values_count_as_not_given(api_client):
    job = submit(api_client).json()
    page = api_client.get("/api/jobs/?state=&limit=&cursor=").json()
    assert [j["id"] for j in page["items"]] == [job["id"]] and page["next"] is None


def _naive_cursor() -> str:
    return base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{uuid.uuid4()}".encode()).decode()


@pytest.mark.parametrize(
    "query,loc",
    [
        ({"state": "sleeping"}, ["query", "state"]),
        ({"state": "QUEUED"}, ["query", "state"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": -1}, ["query", "limit"]),
        ({"limit": 101}, ["query", "limit"]),
        ({"limit": 1000}, ["query", "limit"]),
        ({"limit": "abc"}, ["query", "limit"]),
        ({"limit": "2.5"}, ["query", "limit"]),
        ({"cursor": "garbage!"}, ["query", "cursor"]),
        ({"cursor": base64.urlsafe_b64encode(b"no separator").decode()}, ["query", "cursor"]),
        ({"cursor": base64.urlsafe_b64encode(b"yesterday|not-a-uuid").decode()}, ["query", "cursor"]),
        ({"cursor": _naive_cursor()}, ["query", "cursor"]),
    ],
)
def test_bad_list_queries_are_400(api_client, query, loc):
    submit(api_client)
    assert error_locs(api_client.get("/api/jobs/", query)) == [loc]


def test_the_list_needs_authentication(db):
    assert_error(Client().get("/api/jobs/"), 401)


# --- GET /api/jobs/{id}/ --------------------------------------------------------------------

def test_detail_is_the_job(api_client):
    job = submit(api_client).json()
    response = api_client.get(f"/api/jobs/{job['id']}/")
    assert response.status_code == 200 and response.json() == job


def test_detail_of_finished_jobs(api_client):
    done, broken = submit(api_client).json(), submit(api_client).json()
    assert job_transition(done["id"], "running", attempts=1)
    assert job_transition(done["id"], "succeeded", result={"counted": 5})
    assert job_transition(broken["id"], "running", attempts=1)
    assert job_transition(broken["id"], "failed", error={"type": "CountFailure", "message": "failed at step 2"})
    ok = api_client.get(f"/api/jobs/{done['id']}/").json()
    assert ok["state"] == "succeeded" and ok["result"] == {"counted": 5} and ok["error"] is None
    assert ok["attempts"] == 1
    assert parse_utc(ok["created_at"]) <= parse_utc(ok["started_at"]) <= parse_utc(ok["finished_at"])
    failed = api_client.get(f"/api/jobs/{broken['id']}/").json()
    assert failed["state"] == "failed" and failed["result"] is None
    assert failed["error"] == {"type": "CountFailure", "message": "failed at step 2"}
    assert parse_utc(failed["finished_at"])


def test_detail_shows_live_progress_without_a_database_write(api_client):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running")
    owner = owner_of(job)
    publish(StateEvent(job_id=job["id"], ts=time.time(), state="running"), owner)
    publish(ProgressEvent(job_id=job["id"], ts=time.time(), current=3, total=4, percent=75.0, message="three"),
                  owner)
    detail = api_client.get(f"/api/jobs/{job['id']}/").json()
    assert detail["seq"] == 2 and detail["state"] == "running"
    assert detail["progress"] == {"current": 3, "total": 4, "percent": 75.0, "message": "three"}
    assert parse_utc(detail["started_at"])
    assert Job.objects.get(id=job["id"]).seq == 0  # the row was not written per event
    listed = api_client.get("/api/jobs/").json()["items"][0]
    assert listed["seq"] == 2 and listed["progress"]["current"] == 3


def test_someone_elses_job_a_missing_job_and_a_malformed_id_are_the_same_404(api_client, other_client):
    job = submit(api_client).json()
    for suffix, method in [("", "get"), ("events/", "get"), ("cancel/", "post")]:
        bodies = [
            assert_error(getattr(other_client, method)(f"/api/jobs/{job['id']}/{suffix}"), 404),
            assert_error(getattr(api_client, method)(f"/api/jobs/{uuid.uuid4()}/{suffix}"), 404),
            assert_error(getattr(api_client, method)(f"/api/jobs/not-a-uuid/{suffix}"), 404),
        ]
        assert bodies[0] == bodies[1] == bodies[2], (suffix, bodies)
    assert Job.objects.get(id=job["id"]).state == "queued"  # bob's cancel did nothing


def test_detail_needs_authentication(api_client):
    job = submit(api_client).json()
    assert_error(Client().get(f"/api/jobs/{job['id']}/"), 401)
    assert_error(Client(HTTP_AUTHORIZATION="Bearer jc_wrong").get(f"/api/jobs/{job['id']}/"), 401)


# --- POST /api/jobs/{id}/cancel/ -------------------------------------------------------------

def test_cancel_a_queued_job_at_once(api_client):
    job = submit(api_client).json()
    response = api_client.post(f"/api/jobs/{job['id']}/cancel/")
    assert response.status_code == 202, response.content
    cancelled = response.json()
    assert set(cancelled) == JOB_FIELDS
    assert cancelled["id"] == job["id"] and cancelled["state"] == "cancelled" and cancelled["seq"] == 1
    assert parse_utc(cancelled["finished_at"])
    assert Job.objects.get(id=job["id"]).state == "cancelled"
    # The terminal state event was published and is the job's last event.
    events = api_client.get(f"/api/jobs/{job['id']}/events/").json()
    assert events["complete"] is True
    assert [(e["seq"], e["type"], e["state"]) for e in events["events"]] == [(1, "state", "cancelled")]
    assert api_client.get(f"/api/jobs/{job['id']}/").json()["state"] == "cancelled"


def test_cancel_a_running_job_asks_its_worker(api_client):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running")
    assert not job_cancel_requested(job["id"])
    response = api_client.post(f"/api/jobs/{job['id']}/cancel/")
    assert response.status_code == 202 and response.json()["state"] == "running"
    assert job_cancel_requested(job["id"])
    # Asking again while the worker has not stopped yet is still accepted.
    assert api_client.post(f"/api/jobs/{job['id']}/cancel/").status_code == 202


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled"])
def test_cancel_a_finished_job_is_409(api_client, final):
    job = submit(api_client).json()
    assert job_transition(job["id"], "running") and job_transition(job["id"], final)
    assert_error(api_client.post(f"/api/jobs/{job['id']}/cancel/"), 409)
    assert Job.objects.get(id=job["id"]).state == final


def test_cancelling_twice_is_409_the_second_time(api_client):
    job = submit(api_client).json()
    assert api_client.post(f"/api/jobs/{job['id']}/cancel/").status_code == 202
    assert_error(api_client.post(f"/api/jobs/{job['id']}/cancel/"), 409)
    assert [e["seq"] for e in api_client.get(f"/api/jobs/{job['id']}/events/").json()["events"]] == [1]


def test_cancel_errors(api_client, other_client):
    job = submit(api_client).json()
    assert_error(other_client.post(f"/api/jobs/{job['id']}/cancel/"), 404)
    assert_error(Client().post(f"/api/jobs/{job['id']}/cancel/"), 401)
    assert Job.objects.get(id=job["id"]).state == "queued" and not job_cancel_requested(job["id"])


# --- GET /api/jobs/{id}/events/ --------------------------------------------------------------

def test_events_after_n_in_order(api_client):
    job = submit(api_client).json()
    log_lines(job, 6)
    body = api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 3}).json()
    assert set(body) == {"events", "complete"} and body["complete"] is True
    assert [e["seq"] for e in body["events"]] == [4, 5, 6]
    first = body["events"][0]
    assert set(first) == {"type", "job_id", "seq", "ts", "message"}
    assert (first["type"], first["job_id"], first["message"]) == ("log", job["id"], "line 4")
    assert isinstance(first["ts"], float)
    everything = api_client.get(f"/api/jobs/{job['id']}/events/").json()  # after defaults to 0
    assert [e["seq"] for e in everything["events"]] == [1, 2, 3, 4, 5, 6] and everything["complete"] is True
    assert api_client.get(f"/api/jobs/{job['id']}/events/?after=").json() == everything  # empty: not given
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 6}).json() == {"events": [], "complete": True}
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 50}).json() == {"events": [], "complete": True}


def test_events_of_every_type_have_the_contract_fields(api_client):
    job = submit(api_client).json()
    owner = owner_of(job)
    assert job_transition(job["id"], "running")
    publish(StateEvent(job_id=job["id"], ts=time.time(), state="running"), owner)
    publish(ProgressEvent(job_id=job["id"], ts=time.time(), current=1, total=2, percent=50.0, message="half"),
                  owner)
    publish(StateEvent(job_id=job["id"], ts=time.time(), state="succeeded", result={"counted": 2}), owner)
    running, progress, done = api_client.get(f"/api/jobs/{job['id']}/events/").json()["events"]
    assert set(running) == {"type", "job_id", "seq", "ts", "state", "result", "error"} and running["seq"] == 1
    assert set(progress) == {"type", "job_id", "seq", "ts", "current", "total", "percent", "message"}
    assert (progress["current"], progress["total"], progress["percent"], progress["message"]) == (1, 2, 50.0, "half")
    assert (done["seq"], done["state"], done["result"], done["error"]) == (3, "succeeded", {"counted": 2}, None)


def test_a_job_without_events(api_client):
    job = submit(api_client).json()
    assert api_client.get(f"/api/jobs/{job['id']}/events/").json() == {"events": [], "complete": True}


def test_events_trimmed_from_history_are_incomplete(api_client, settings):
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    job = submit(api_client).json()
    log_lines(job, 8)
    body = api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 0}).json()
    assert body["complete"] is False and [e["seq"] for e in body["events"]] == [6, 7, 8]
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 4}).json()["complete"] is False
    tail = api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 5}).json()
    assert tail["complete"] is True and [e["seq"] for e in tail["events"]] == [6, 7, 8]


def test_history_that_expired_as_a_whole_is_incomplete(api_client, redis):
    job = submit(api_client).json()
    log_lines(job, 3)
    Job.objects.filter(id=job["id"]).update(seq=3)
    redis.flushdb()  # the history expired (or Redis lost it); the row still knows seq 3
    assert api_client.get(f"/api/jobs/{job['id']}/events/").json() == {"events": [], "complete": False}
    assert api_client.get(f"/api/jobs/{job['id']}/events/", {"after": 3}).json() == {"events": [], "complete": True}


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", str(2**64), "99999999999999999999999"])
def test_a_bad_after_is_400(api_client, after):
    job = submit(api_client).json()
    assert error_locs(api_client.get(f"/api/jobs/{job['id']}/events/", {"after": after})) == [["query", "after"]]


def test_events_errors(api_client, other_client):
    job = submit(api_client).json()
    log_lines(job, 2)
    assert_error(other_client.get(f"/api/jobs/{job['id']}/events/"), 404)
    assert_error(Client().get(f"/api/jobs/{job['id']}/events/"), 401)


# --- GET /api/kinds/ -------------------------------------------------------------------------

def test_kinds_publish_their_json_schema(api_client):
    response = api_client.get("/api/kinds/")
    assert response.status_code == 200
    kinds = {k["name"]: k for k in response.json()}
    assert all(set(k) == {"name", "title", "params_schema"} and k["title"] for k in kinds.values())
    assert {"demo.count", "maintenance.prune_jobs"} <= set(kinds)
    schema = kinds["demo.count"]["params_schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert {"steps", "interval_ms", "fail_at"} <= set(props)
    assert (props["steps"]["type"], props["steps"]["minimum"], props["steps"]["maximum"]) == ("integer", 1, 1_000_000)
    assert props["steps"]["default"] == 100
    assert (props["interval_ms"]["minimum"], props["interval_ms"]["maximum"], props["interval_ms"]["default"]) == (
        0, 60_000, 0)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"steps": 3, "interval_ms": 10, "fail_at": None})
    assert validator.is_valid({"fail_at": 2})
    assert not validator.is_valid({"steps": 0}) and not validator.is_valid({"fail_at": "x"})
    prune = kinds["maintenance.prune_jobs"]["params_schema"]
    jsonschema.Draft202012Validator.check_schema(prune)
    assert {"older_than_days", "dry_run"} <= set(prune["properties"])


def test_kinds_need_authentication(db):
    assert_error(Client().get("/api/kinds/"), 401)


# --- POST /api/ws-tickets/ -------------------------------------------------------------------

def test_a_ws_ticket_is_short_lived_and_single_use(api_client, user, redis):
    from jobcast.accounts.services import ticket_redeem
    from jobcast.redis_client import get_async_redis

    response = api_client.post("/api/ws-tickets/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert isinstance(body["ticket"], str) and len(body["ticket"]) >= 32
    assert 0 < body["expires_in"] <= 60
    (key,) = redis.keys("jobcast:ticket:*")
    assert 0 < redis.ttl(key) <= body["expires_in"]
    assert api_client.post("/api/ws-tickets/").json()["ticket"] != body["ticket"]

    async def redeem_twice():
        return [await ticket_redeem(get_async_redis(), body["ticket"]) for _ in range(2)]

    first, second = asyncio.run(redeem_twice())
    assert first.user_id == user.id and first.token_id is not None  # bound to the token that asked for it
    assert second is None


def test_ws_tickets_need_authentication(db, redis):
    assert_error(Client().post("/api/ws-tickets/"), 401)
    assert redis.keys("jobcast:ticket:*") == []


# --- GET /api/schema/ ------------------------------------------------------------------------

def test_the_openapi_document_lists_every_route(db):
    response = Client().get("/api/schema/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    expected = {
        "/api/jobs/": {"post": {"201", "200", "400", "401", "413", "429"}, "get": {"200", "400", "401"}},
        "/api/jobs/{job_id}/": {"get": {"200", "401", "404"}},
        "/api/jobs/{job_id}/cancel/": {"post": {"202", "401", "404", "409"}},
        "/api/jobs/{job_id}/events/": {"get": {"200", "401", "404"}},
        "/api/kinds/": {"get": {"200", "401"}},
        "/api/ws-tickets/": {"post": {"201", "401"}},
    }
    for path, methods in expected.items():
        assert path in paths, path
        for method, statuses in methods.items():
            assert statuses <= set(paths[path][method]["responses"]), (path, method)
    list_params = {p["name"] for p in paths["/api/jobs/"]["get"]["parameters"]}
    assert {"state", "limit", "cursor"} <= list_params
    assert "after" in {p["name"] for p in paths["/api/jobs/{job_id}/events/"]["get"]["parameters"]}
    assert "bearer" in json.dumps(schema["components"]["securitySchemes"]).lower()


# --- session authentication ------------------------------------------------------------------

def test_a_session_can_read(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/jobs/").json() == {"items": [], "next": None}
    assert client.get("/api/kinds/").status_code == 200


def test_a_session_write_without_csrf_token_is_403_json(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    body = json.dumps({"kind": "demo.count"})
    assert_error(client.post("/api/jobs/", data=body, content_type="application/json"), 403)
    client.cookies["csrftoken"] = _get_new_csrf_string()  # a cookie alone is not enough
    assert_error(client.post("/api/jobs/", data=body, content_type="application/json"), 403)
    assert_error(client.post("/api/ws-tickets/"), 403)
    assert Job.objects.count() == 0


def test_a_session_write_with_its_csrf_token_works(user):
    client, token = csrf_session(user)
    response = client.post("/api/jobs/", data=json.dumps({"kind": "demo.count"}), content_type="application/json",
                           headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.content
    job = response.json()
    assert Job.objects.get(id=job["id"]).owner_id == user.id
    cancel = client.post(f"/api/jobs/{job['id']}/cancel/", headers={"X-CSRFToken": token})
    assert cancel.status_code == 202 and cancel.json()["state"] == "cancelled"
    assert client.post("/api/ws-tickets/", headers={"X-CSRFToken": token}).status_code == 201
    assert_error(client.post("/api/ws-tickets/", headers={"X-CSRFToken": _get_new_csrf_string()}), 403)


def test_a_bearer_token_needs_no_csrf_token(token):
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert submit(client).status_code == 201
    assert client.post("/api/ws-tickets/").status_code == 201


def test_a_logged_out_session_is_401(user):
    client = Client()
    client.force_login(user)
    assert client.get("/api/jobs/").status_code == 200
    client.logout()
    assert_error(client.get("/api/jobs/"), 401)


def test_users_only_see_their_own_jobs_through_a_session_too(user, other_user, other_client):
    theirs = submit(other_client).json()
    client = Client()
    client.force_login(user)
    assert client.get("/api/jobs/").json()["items"] == []
    assert_error(client.get(f"/api/jobs/{theirs['id']}/"), 404)


# --- errors are JSON everywhere ----------------------------------------------------------------

def test_unknown_paths_are_json_404(api_client):
    assert_error(api_client.get("/api/nothing-here/"), 404)
    assert_error(api_client.get("/api/jobs/x/y/z/"), 404)
    assert_error(Client().get("/api/nothing-here/", headers={"Accept": "text/html"}), 404)
    assert_error(Client().get("/nothing-here/"), 404)


def test_a_method_that_is_not_allowed_is_json_405(api_client):
    response = api_client.put("/api/jobs/", data="{}", content_type="application/json")
    assert_error(response, 405)
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    job = submit(api_client).json()
    assert_error(api_client.delete(f"/api/jobs/{job['id']}/"), 405)
    assert_error(api_client.get(f"/api/jobs/{job['id']}/cancel/"), 405)
    assert Job.objects.get(id=job["id"]).state == "queued"


def test_an_unexpected_exception_is_json_500_without_internals(api_client, monkeypatch):
    job = submit(api_client).json()

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("jobcast.web.api.job_list_for_user", explode)
    monkeypatch.setattr("jobcast.web.api.read_history", explode)
    for response in (api_client.get("/api/jobs/"), api_client.get(f"/api/jobs/{job['id']}/events/")):
        body = assert_error(response, 500)
        assert "secret internals" not in response.content.decode() and "RuntimeError" not in json.dumps(body)


def test_an_exception_outside_the_api_is_json_500_too(db, monkeypatch):
    class Broken:
        def labels(self, *args):
            raise RuntimeError("secret internals")

    monkeypatch.setattr("jobcast.web.middleware.http_requests", Broken())
    response = Client(raise_request_exception=False).get("/healthz")
    assert_error(response, 500)
    assert "secret internals" not in response.content.decode()


def test_a_request_for_a_host_that_is_not_allowed_is_json_400(db):
    assert_error(Client(HTTP_HOST="evil.example").get("/api/jobs/"), 400)


def test_operator_endpoints_answer_a_host_that_is_not_allowed(db):
    """Prometheus and probes reach an instance by IP (compose: Host: 172.18.0.5:8001)."""
    by_ip = Client(HTTP_HOST="172.18.0.5:8001")
    for path in ("/healthz", "/readyz", "/metrics"):
        response = by_ip.get(path)
        assert response.status_code == 200, (path, response.content[:200])
    assert "jobcast_http_requests_total" in by_ip.get("/metrics").content.decode()
    # Everything else still gets the ALLOWED_HOSTS check.
    for path in ("/api/jobs/", "/", "/healthz/", "/metrics/x"):
        assert_error(by_ip.get(path), 400)


# --- operators ---------------------------------------------------------------------------------

def test_health_endpoints(db):
    alive = Client().get("/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_is_503_when_redis_does_not_answer(db, settings):
    settings.JOBCAST = {**settings.JOBCAST, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["redis"].startswith("error")
