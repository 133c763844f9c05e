"""Changing jobs (HackSoft-style services): submit, cancel and the one state-transition function."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobcast.errors import ApiError, Conflict, NotFound
from jobcast.events.groups import cancel_key
from jobcast.events.publisher import notify_user_snapshot, publish_event
from jobcast.events.schema import StateEvent
from jobcast.jobs.documents import job_document
from jobcast.jobs.models import Job
from jobcast.jobs.queue import enqueue_job
from jobcast.jobs.registry import validate_params
from jobcast.jobs.selectors import job_get_for_user
from jobcast.jobs.states import State, is_terminal, sources_of
from jobcast.metrics import jobs_finished
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)


def job_transition(job_id, target: str, **fields) -> bool:
    """Move a job to `target` if the contract allows it from its current state; True if it moved.

    The check and the write are one conditional UPDATE, so two processes racing
    (a cancel and a worker finishing, say) cannot both win.
    """
    now = timezone.now()
    if target == State.RUNNING:
        fields.setdefault("started_at", now)
    if is_terminal(target):
        fields.setdefault("finished_at", now)
    updated = Job.objects.filter(id=job_id, state__in=sources_of(target)).update(state=target, **fields)
    return updated == 1


def check_submit_rate(user_id) -> None:
    """Enforce JOBCAST_SUBMIT_RATE_PER_MINUTE per user (fixed one-minute windows in Redis)."""
    limit = settings.JOBCAST["SUBMIT_RATE_PER_MINUTE"]
    if not limit:
        return
    now = time.time()
    window = int(now // 60)
    key = f"jobcast:rate:submit:{user_id}:{window}"
    pipe = get_redis().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 61)
    count, _ = pipe.execute()
    if count > limit:
        retry_after = max(1, int(60 - now % 60) + 1)
        raise ApiError(
            429,
            f"Too many jobs submitted: at most {limit} per minute.",
            headers={"Retry-After": str(retry_after)},
        )


def job_submit(user, kind: str, params, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Create and enqueue a job; returns (job, created). A reused Idempotency-Key returns the first job."""
    kind_obj, clean_params = validate_params(kind, params)
    if idempotency_key:
        existing = Job.objects.filter(owner_id=user.id, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    check_submit_rate(user.id)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                owner_id=user.id, kind=kind_obj.name, params=clean_params, idempotency_key=idempotency_key or None
            )
            transaction.on_commit(lambda: _announce(job))
    except IntegrityError:
        # Two requests with the same key raced; the other one created the job.
        existing = Job.objects.filter(owner_id=user.id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    return job, True


def _announce(job: Job) -> None:
    # The snapshot first: a fast worker's `running` event must not reach the owner's
    # streams before the job itself does.
    notify_user_snapshot(job.owner_id, job_document(job))
    enqueue_job(job.id)


def job_cancel(user, job_id) -> Job:
    """Cancel a user's job: a queued one at once, a running one as soon as its worker notices."""
    job = job_get_for_user(user, job_id)
    if job is None:
        raise NotFound()
    return job_cancel_job(job)


def job_cancel_job(job: Job) -> Job:
    """Cancel this job (the caller has checked ownership)."""
    if is_terminal(job.state):
        raise Conflict(f"Job is already {job.state}.")
    if job.state == State.QUEUED and job_transition(job.id, State.CANCELLED, cancel_requested=True):
        job.refresh_from_db()
        published = publish_event(
            StateEvent(job_id=str(job.id), ts=time.time(), state=State.CANCELLED), job.owner_id, terminal=True,
            seq_floor=job.seq,
        )
        Job.objects.filter(id=job.id).update(seq=published.seq)
        job.seq = published.seq
        jobs_finished.labels(job.kind, State.CANCELLED).inc()
        return job
    # Running (or it started between our read and the update): the worker stops it.
    Job.objects.filter(id=job.id).update(cancel_requested=True)
    get_redis().set(cancel_key(job.id), 1, ex=max(settings.JOBCAST["HISTORY_TTL"], 86400))
    job.refresh_from_db()
    if is_terminal(job.state) and job.state != State.CANCELLED:
        raise Conflict(f"Job is already {job.state}.")
    return job


def cancel_requested(job_id) -> bool:
    """Whether a cancellation of this job was requested (one Redis read)."""
    return bool(get_redis().exists(cancel_key(job_id)))
