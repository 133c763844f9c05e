"""The web tier's pages and admin through Django's test client (the browser tests in
tests/e2e/test_browser.py drive the same pages in Chromium): who sees what, the submit form
generated from a kind's JSON Schema with server validation next to the fields, cancel
without JavaScript, the staff page, and the admin's filters, search, read-only view and
cancel action."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from jobcast.events.schema import LogEvent, ProgressEvent, StateEvent
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_cancel_requested, job_submit, job_transition
from tests.integration.test_session_login import log_in
from tests.support import publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def enqueued(monkeypatch):
    """Submitted jobs stay queued: nothing here runs a worker (the queue is Celery's, tested elsewhere)."""
    from jobcast.jobs import services

    queued = []
    monkeypatch.setattr(services, "enqueue_job", queued.append)
    return queued


@pytest.fixture
def alice(user):
    return log_in()[0]


@pytest.fixture
def staff(db, django_user_model):
    django_user_model.objects.create_user(username="carol", password="carol-password", is_staff=True, is_superuser=True)
    return log_in("carol", "carol-password")[0]


def html(response) -> str:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_pages_need_a_session_and_the_front_page_sends_users_to_their_jobs(alice):
    for path in ("/jobs/", "/jobs/new/", f"/jobs/{Job.__name__}/"):
        response = Client().get(path)
        if path.endswith("Job/"):
            assert response.status_code == 404  # not a UUID: no such page
            continue
        assert response.status_code == 302 and response["Location"].startswith(f"/accounts/login/?next={path}")
    assert "Sign in" in html(Client().get("/"))
    assert alice.get("/")["Location"] == "/jobs/"


def test_the_jobs_page_lists_my_jobs_only_with_bars_and_the_live_script(alice, user, other_user, enqueued):
    mine, _ = job_submit(user, "demo.count", {"steps": 10})
    theirs, _ = job_submit(other_user, "demo.count", {"steps": 10})
    job_transition(mine.id, "running")
    publish([StateEvent(job_id=str(mine.id), ts=time.time(), state="running"),
             ProgressEvent(job_id=str(mine.id), ts=time.time(), current=4, total=10, percent=40.0, message="step 4")], user.id)
    page = html(alice.get("/jobs/"))
    assert str(mine.id) in page and str(theirs.id) not in page
    bar = re.search(r'<div class="bar[^"]*" role="progressbar"[^>]*>', page, re.S).group(0)
    assert 'aria-valuenow="40"' in bar and 'aria-valuemin="0"' in bar and 'aria-valuemax="100"' in bar
    assert "aria-label=\"Progress of demo.count job" in bar and 'aria-valuetext="40%: step 4"' in bar
    assert 'id="jobs-data"' in page and 'src="/static/jobcast/pages.js"' in page and 'type="module"' in page
    assert 'id="connection" role="status"' in page
    assert "All jobs" not in page  # not staff


def test_the_job_page_shows_the_job_its_log_lines_and_a_cancel_button(alice, user, other_user, enqueued):
    job, _ = job_submit(user, "demo.count", {"steps": 10})
    job_transition(job.id, "running")
    publish([StateEvent(job_id=str(job.id), ts=time.time(), state="running"),
             LogEvent(job_id=str(job.id), ts=time.time(), message="first <line>"),
             ProgressEvent(job_id=str(job.id), ts=time.time(), current=5, total=10, percent=50.0, message="half")],
            user.id)
    page = html(alice.get(f"/jobs/{job.id}/"))
    assert "first &lt;line&gt;" in page and 'data-seq="2"' in page  # escaped, with its seq
    assert 'id="cancel-form"' in page and 'hidden' not in re.search(r'<form[^>]*id="cancel-form"[^>]*>', page).group(0)
    assert '"seq": 3' in page  # the document the page's watch resumes after
    theirs, _ = job_submit(other_user, "demo.count", {"steps": 1})
    assert alice.get(f"/jobs/{theirs.id}/").status_code == 404

    # Cancel without JavaScript: a form post with the CSRF token, then back to the page.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = alice.post(f"/jobs/{job.id}/cancel/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job_cancel_requested(job.id)
    assert alice.post(f"/jobs/{job.id}/cancel/").status_code == 403  # no CSRF token
    assert alice.get(f"/jobs/{job.id}/cancel/").status_code == 405


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<(?:input|textarea|select)[^>]*name="([^"]+)"[^>]*?(?:value="([^"]*)")?', page))


def test_the_submit_form_is_generated_from_the_kinds_schema(alice):
    page = html(alice.get("/jobs/new/?kind=demo.count"))
    steps = re.search(r'<input name="steps"[^>]*>', page, re.S).group(0)
    assert 'type="number"' in steps and 'step="1"' in steps and 'min="1"' in steps and 'max="1000000"' in steps
    assert 'value="100"' in steps and 'aria-describedby="param-steps-help param-steps-error"' in steps
    assert '<label for="param-steps">Steps' in page and "How many steps to count." in page
    fail_at = re.search(r'<input name="fail_at"[^>]*>', page, re.S).group(0)
    assert "required" not in fail_at and 'value=""' in fail_at and "Leave empty for none." in page
    files = html(alice.get("/jobs/new/?kind=files.checksum"))
    assert re.search(r'<textarea name="paths"[^>]*data-widget="lines"', files) and "One per line." in files
    prune = html(alice.get("/jobs/new/?kind=maintenance.prune_jobs"))
    assert re.search(r'<input type="checkbox" name="dry_run"', prune)
    assert alice.get("/jobs/new/?kind=no.such").status_code == 404


def test_a_valid_form_submits_the_job_and_opens_its_page(alice, user, enqueued):
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html(alice.get("/jobs/new/"))).group(1)
    response = alice.post("/jobs/new/", {"csrfmiddlewaretoken": token, "kind": "demo.count", "steps": "7",
                                         "interval_ms": "", "fail_at": "", "log_every": "2"})
    job = Job.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.params == {"steps": 7, "interval_ms": 0, "fail_at": None, "log_every": 2}
    assert enqueued == [job.id]


def test_server_validation_errors_are_shown_next_to_their_fields(alice, user, enqueued):
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html(alice.get("/jobs/new/"))).group(1)
    page = html(alice.post("/jobs/new/", {"csrfmiddlewaretoken": token, "kind": "demo.count", "steps": "0",
                                          "interval_ms": "abc", "log_every": "1"}))
    assert '<p class="field-error" id="param-interval_ms-error" data-error-for="interval_ms">Enter a whole number.' in page
    # A form the page could read goes to the kind's model; its errors land on their fields too.
    page = html(alice.post("/jobs/new/", {"csrfmiddlewaretoken": token, "kind": "demo.count", "steps": "0"}))
    assert re.search(r'id="param-steps-error" data-error-for="steps">Input should be greater than or equal to 1', page)
    assert re.search(r'<input name="steps" id="param-steps" value="0"[^>]*aria-invalid="true"', page, re.S)
    assert 'role="alert"' in page and "Please correct the fields marked below." in page
    page = html(alice.post("/jobs/new/", {"csrfmiddlewaretoken": token, "kind": "files.checksum", "paths": "ok\n../etc",
                                          "max_files": "10"}))
    assert re.search(r'data-error-for="paths">Line 2: Value error, must not contain', page)
    assert Job.objects.count() == 0 and enqueued == []


def test_the_all_jobs_page_is_for_staff(alice, staff, user, other_user, enqueued):
    assert alice.get("/staff/jobs/").status_code == 302  # to the login page: not staff
    first, _ = job_submit(user, "demo.count", {"steps": 1})
    second, _ = job_submit(other_user, "demo.count", {"steps": 1})
    finished, _ = job_submit(other_user, "demo.count", {"steps": 1})
    job_transition(finished.id, "cancelled")
    page = html(staff.get("/staff/jobs/"))
    rows = re.findall(r'<tr data-job-id="([^"]+)">.*?data-owner>([^<]+)</td>', page, re.S)
    assert rows == [(str(first.id), "alice"), (str(second.id), "bob")]  # active only, oldest first
    assert f'/admin/jobcast_jobs/job/{first.id}/change/' in page and "All jobs" in page


def test_the_admin_lists_filters_searches_and_shows_a_job_read_only(staff, user, other_user, enqueued):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    job_transition(job.id, "running")
    publish([StateEvent(job_id=str(job.id), ts=time.time(), state="running"),
             LogEvent(job_id=str(job.id), ts=time.time(), message="hello from the job")], user.id)
    other, _ = job_submit(other_user, "files.checksum", {"paths": ["."]})
    changelist = html(staff.get("/admin/jobcast_jobs/job/"))
    assert str(job.id) in changelist and str(other.id) in changelist
    for parameter in ("state__exact=running", "kind__exact=demo.count", f"owner__id__exact={user.id}"):
        filtered = html(staff.get(f"/admin/jobcast_jobs/job/?{parameter}"))
        assert str(job.id) in filtered and str(other.id) not in filtered, parameter
    assert str(other.id) not in html(staff.get(f"/admin/jobcast_jobs/job/?q={job.id}"))
    assert str(job.id) not in html(staff.get("/admin/jobcast_jobs/job/?q=not-a-uuid")).split("</thead>")[-1]
    detail = html(staff.get(f"/admin/jobcast_jobs/job/{job.id}/change/"))
    assert "hello from the job" in detail and "Event history" in detail
    assert 'name="state"' not in detail and "Save" not in detail  # read-only
    assert staff.get("/admin/jobcast_jobs/job/add/").status_code == 403
    assert "/static/admin/css/base.css" in detail  # the admin's files, collected with the rest


def test_the_admin_cancel_action_cancels_and_records_who_did(staff, user, enqueued):
    queued, _ = job_submit(user, "demo.count", {"steps": 3})
    running, _ = job_submit(user, "demo.count", {"steps": 3})
    job_transition(running.id, "running")
    done, _ = job_submit(user, "demo.count", {"steps": 3})
    job_transition(done.id, "cancelled")
    page = html(staff.get("/admin/jobcast_jobs/job/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = staff.post("/admin/jobcast_jobs/job/", {"csrfmiddlewaretoken": token, "action": "cancel_jobs",
                                               "_selected_action": [str(queued.id), str(running.id), str(done.id)]},
                          follow=True)
    text = html(response)
    assert "Cancel requested for 2 job(s)" in text and "1 job(s) had already finished." in text
    assert Job.objects.get(id=queued.id).state == "cancelled" and job_cancel_requested(running.id)
    history = html(staff.get(f"/admin/jobcast_jobs/job/{queued.id}/history/"))
    assert "Cancel requested" in history and "carol" in history


def test_a_non_staff_user_cannot_open_the_admin(alice):
    response = alice.get("/admin/jobcast_jobs/job/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_users_and_groups_are_in_the_admin_without_autodiscovery(staff, user):
    users = html(staff.get("/admin/auth/user/"))
    assert "carol" in users and "alice" in users
    assert staff.get("/admin/auth/group/").status_code == 200
    assert get_user_model().objects.count() == 2
