"""A running job's lease: duplicates skipped, lost workers noticed, abandoned jobs queued again (docs/workers.md)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobcast.events.groups import lease_key
from jobcast.jobs import lease as leases
from jobcast.jobs.models import Job
from jobcast.jobs.queue import QUEUE
from jobcast.jobs.services import job_start, job_submit, job_transition
from jobcast.worker.recovery import requeue_abandoned_jobs
from jobcast.worker.runner import run_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def short_leases(settings):
    settings.JOBCAST = {**settings.JOBCAST, "LEASE_SECONDS": 1.0}


def test_a_run_holds_the_lease_and_gives_it_back(user, redis):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    run = job_start(job.id)
    assert redis.get(lease_key(job.id)) == run.lease.value.encode()
    run.lease.release()
    assert redis.get(lease_key(job.id)) is None
    job2, _ = job_submit(user, "demo.count", {"steps": 3})
    run_job(str(job2.id))
    assert redis.get(lease_key(job2.id)) is None and Job.objects.get(id=job2.id).state == "succeeded"


def test_a_duplicate_delivery_of_a_job_running_elsewhere_is_skipped(user, redis, short_leases):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    first = job_start(job.id)  # a live attempt: this process, renewing its lease
    try:
        started = time.monotonic()
        assert job_start(job.id) is None  # waited a lease's life, still held: a duplicate
        assert 1.0 <= time.monotonic() - started < 5
        row = Job.objects.get(id=job.id)
        assert row.state == "running" and row.attempts == 1
    finally:
        first.lease.release()


def test_a_job_whose_attempt_died_on_this_host_runs_again_at_once(user, redis):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    assert job_transition(job.id, "running", attempts=1)
    redis.set(lease_key(job.id), f"{leases.socket.gethostname()}:999999:dead", ex=60)  # its pid is gone
    started = time.monotonic()
    run_job(str(job.id))
    assert time.monotonic() - started < 5  # no wait for the lease to lapse
    row = Job.objects.get(id=job.id)
    assert row.state == "succeeded" and row.attempts == 2


def test_a_lapsed_lease_from_another_host_is_waited_out(user, redis, short_leases):
    job, _ = job_submit(user, "demo.count", {"steps": 3})
    assert job_transition(job.id, "running", attempts=1)
    redis.set(lease_key(job.id), "another-host:123:x", px=800)  # its worker vanished: no more renewals
    run_job(str(job.id))
    row = Job.objects.get(id=job.id)
    assert row.state == "succeeded" and row.attempts == 2


def test_running_jobs_nobody_holds_are_queued_again_once(user, redis, short_leases):
    abandoned = Job.objects.create(owner=user, kind="demo.count", params={"steps": 1}, state="running", attempts=1,
                                   started_at=timezone.now() - timedelta(minutes=5))
    held, _ = job_submit(user, "demo.count", {"steps": 1})
    Job.objects.filter(id=held.id).update(state="running", started_at=timezone.now() - timedelta(minutes=5))
    redis.set(lease_key(held.id), f"another-host:1:{held.id}", ex=60)  # alive elsewhere
    fresh = Job.objects.create(owner=user, kind="demo.count", params={}, state="running", started_at=timezone.now())
    redis.delete(QUEUE)
    suspects: set = set()
    assert requeue_abandoned_jobs(suspects) == 0 and suspects == {abandoned.id}  # one miss is not enough
    assert requeue_abandoned_jobs(suspects) == 1
    assert redis.llen(QUEUE) == 1 and str(abandoned.id) in redis.lindex(QUEUE, 0).decode()
    assert requeue_abandoned_jobs(suspects) == 0 and requeue_abandoned_jobs(suspects) == 0  # claimed: once
    assert fresh.id not in suspects
    run_job(str(abandoned.id))  # its delivery: the worker was lost, so it runs again
    row = Job.objects.get(id=abandoned.id)
    assert row.state == "succeeded" and row.attempts == 2
