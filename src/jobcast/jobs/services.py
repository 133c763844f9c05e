"""Changing jobs (HackSoft-style services): the whole lifecycle of a job, in one place.

Submitting, cancelling, starting (or resuming after a lost worker) and ending a job live
here, so the state machine and its side effects — the conditional row update, the state
event, the row's seq, the metrics — are written once. The worker's runner, the HTTP and
WebSocket cancel, and anything that reaps a job whose worker vanished call these
(docs/workers.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from jobcast.conf import option
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from jobcast.errors import ApiError, Conflict, NotFound
from jobcast.events.groups import cancel_key, submit_rate_key
from jobcast.events.publisher import JobPublisher, RedisUnavailable, notify_new_job
from jobcast.events.schema import JobError, LogEvent, StateEvent
from jobcast.jobs.documents import job_document
from jobcast.jobs.lease import JobLease, wait_until_unheld
from jobcast.jobs.models import Job
from jobcast.jobs.queue import enqueue_job
from jobcast.jobs.registry import JobKind, get_kind, validate_params
from jobcast.jobs.selectors import job_get_for_user
from jobcast.jobs.states import State, is_terminal, sources_of
from jobcast.metrics import (
    job_duration,
    job_queue_wait,
    jobs_finished,
    jobs_restarted,
    jobs_running,
    jobs_started,
    jobs_submitted,
)
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)

# A running job's row gets its progress and seq at most this often; live readers get the
# exact values from Redis, the row only has to stay close (no database write per event).
DB_PROGRESS_INTERVAL = 5.0


def job_transition(job_id, target: str, *, only_from: str | None = None, **fields) -> bool:
    """Move a job to `target` if the contract allows it from its current state; True if it moved.

    The check and the write are one conditional UPDATE, so two processes racing
    (a cancel and a worker starting or finishing, say) cannot both win. `only_from`
    narrows the allowed sources to the state the caller saw.
    """
    now = timezone.now()
    if target == State.RUNNING:
        fields.setdefault("started_at", now)
    if is_terminal(target):
        fields.setdefault("finished_at", now)
    sources = [only_from] if only_from is not None else sources_of(target)
    updated = Job.objects.filter(id=job_id, state__in=sources).update(state=target, **fields)
    return updated == 1


# -- submitting ----------------------------------------------------------------------


def check_submit_rate(user_id) -> None:
    """Enforce JOBCAST_SUBMIT_RATE_PER_MINUTE per user (fixed one-minute windows in Redis)."""
    limit = option("SUBMIT_RATE_PER_MINUTE")
    if not limit:
        return
    now = time.time()
    key = submit_rate_key(user_id, int(now // 60))
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


def check_active_jobs(user_id) -> None:
    """Enforce JOBCAST_MAX_ACTIVE_JOBS_PER_USER: queued and running jobs of one user at once."""
    limit = option("MAX_ACTIVE_JOBS_PER_USER")
    if limit and Job.objects.filter(owner_id=user_id, state__in=[State.QUEUED, State.RUNNING])[:limit].count() >= limit:
        raise ApiError(
            429,
            f"Too many active jobs: at most {limit} queued or running at once. Wait for some to finish.",
            headers={"Retry-After": "10"},
        )


def job_submit(user, kind: str, params, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Create and enqueue a job; returns (job, created). A reused Idempotency-Key returns the first job."""
    kind_obj, clean_params = validate_params(kind, params)
    if idempotency_key:
        existing = Job.objects.filter(owner_id=user.id, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    check_submit_rate(user.id)
    check_active_jobs(user.id)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                owner_id=user.id, kind=kind_obj.name, params=clean_params, idempotency_key=idempotency_key or None
            )
            transaction.on_commit(lambda: _announce_and_enqueue(job, user.get_username()))
    except IntegrityError:
        # Two requests with the same key raced; the other one created the job.
        existing = Job.objects.filter(owner_id=user.id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    jobs_submitted.labels(job.kind).inc()
    return job, True


def _announce_and_enqueue(job: Job, owner_name: str) -> None:
    """Show the new job on its owner's all-jobs streams and the staff stream, then queue it for a worker.

    When Redis is away the job cannot be queued: its row is deleted again, so no job is
    left half-created (queued, but in no queue), and the error answers the request (503).
    """
    try:
        # The snapshot first: a fast worker's `running` event must not reach the owner's
        # streams before the job itself does.
        notify_new_job(job.owner_id, owner_name, job_document(job))
        enqueue_job(job.id)
    except Exception:
        Job.objects.filter(id=job.id, state=State.QUEUED).delete()
        raise


# -- cancelling ----------------------------------------------------------------------


def job_cancel(user, job_id) -> Job:
    """Cancel a user's job: a queued one at once, a running one as soon as its worker notices."""
    job = job_get_for_user(user, job_id)
    if job is None:
        raise NotFound()
    return job_request_cancel(job)


def job_request_cancel(job: Job) -> Job:
    """Cancel this job (the caller has checked ownership); 409 when it already ended otherwise."""
    if is_terminal(job.state):
        raise Conflict(f"Job is already {job.state}.")
    # Only from `queued`: a worker that started the job meanwhile owns it; it gets the flag below.
    if job.state == State.QUEUED and _end(job, job_publisher(job), State.CANCELLED, from_state=State.QUEUED):
        return _reread(job)
    # Running (or it started between our read and the update): its worker reads this flag
    # every JOBCAST_CANCEL_CHECK_INTERVAL and ends the job `cancelled`.
    get_redis().set(cancel_key(job.id), 1, ex=max(option("HISTORY_TTL"), 86400))
    job = _reread(job)
    if is_terminal(job.state) and job.state != State.CANCELLED:
        raise Conflict(f"Job is already {job.state}.")
    return job


def _reread(job: Job) -> Job:
    """The job's row as it is now; 404 when it was deleted meanwhile (e.g. pruned)."""
    try:
        job.refresh_from_db()
    except Job.DoesNotExist:
        raise NotFound() from None
    return job


def job_cancel_requested(job_id) -> bool:
    """Whether a cancellation of this running job was requested (one Redis read)."""
    return bool(get_redis().exists(cancel_key(job_id)))


# -- running ---------------------------------------------------------------------------


@dataclass
class JobRun:
    """A job a worker is running: its row, its kind, its publish handle and its lease.

    Made only by `job_start`, which counts it in `jobcast_jobs_running`; `job_finish` (or
    `job_give_up`, for an attempt Redis's absence ended) uncounts it.
    """

    job: Job
    kind: JobKind
    publisher: JobPublisher
    lease: JobLease
    counted: bool = False  # in jobcast_jobs_running until job_finish


def _running(job: Job, kind: JobKind, publisher: JobPublisher, lease: JobLease) -> JobRun:
    """The run this process is about to do, counted in jobcast_jobs_running (job_finish uncounts it)."""
    jobs_running.labels(job.kind).inc()
    return JobRun(job, kind, publisher, lease, counted=True)


def _uncount(run: JobRun) -> None:
    if run.counted:
        run.counted = False
        jobs_running.labels(run.job.kind).dec()


def job_publisher(job: Job, *, sync_row: bool = False) -> JobPublisher:
    """The job's publish handle, numbering above the row's seq; `sync_row` copies progress to the row now and then."""
    if not sync_row:
        return JobPublisher(job.id, job.owner_id, seq=job.seq)
    last_write = time.monotonic()

    def write_row(publisher: JobPublisher) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= DB_PROGRESS_INTERVAL and publisher.latest_progress is not None:
            last_write = now
            progress = publisher.latest_progress.progress().model_dump()
            try:
                Job.objects.filter(id=job.id).update(progress=progress, seq=publisher.seq)
            except DatabaseError as exc:
                # A copy for readers of the row, written again next interval and at the end: a
                # database that is away must not fail the job's code inside ctx.progress.
                logger.warning("job %s: its progress could not be written to its row: %s", job.id, type(exc).__name__)

    return JobPublisher(job.id, job.owner_id, seq=job.seq, after_publish=write_row)


def job_start(job_id, *, outage: RedisUnavailable | None = None, lease: JobLease | None = None) -> JobRun | None:
    """Start a delivered job, or resume it after its worker was lost; None when it must not run.

    A job found `running` is either run by a live attempt elsewhere (its lease is held: this
    delivery is a duplicate, skipped), or was being run by a worker that died (or, with
    `outage`, by this worker's `lease` until Redis went away): it runs again (attempts grows)
    unless its kind says `redeliver=False` or it ran out of attempts (JOBCAST_MAX_ATTEMPTS),
    in which case it fails with `WorkerLost` (or `RedisUnavailable`). The attempt that runs
    holds the job's lease; the runner renews and releases it.
    """
    job = Job.objects.filter(id=job_id).first()
    if job is None or is_terminal(job.state):
        return None
    publisher = job_publisher(job, sync_row=True)
    kind = get_kind(job.kind)
    lease = lease or JobLease(job.id)
    if job.state == State.QUEUED:
        started_at = timezone.now()
        if not job_transition(job.id, State.RUNNING, attempts=F("attempts") + 1, started_at=started_at):
            return None  # cancelled while queued
        lease.take()
        job.state, job.started_at, job.attempts = State.RUNNING, started_at, job.attempts + 1
        waited = max(0.0, (started_at - job.created_at).total_seconds())
        jobs_started.labels(job.kind).inc()
        job_queue_wait.labels(job.kind).observe(waited)
        logger.info("job %s (%s) started after %.3f s in the queue", job.id, job.kind, waited,
                    extra={"kind": job.kind, "attempt": job.attempts, "queue_wait_s": round(waited, 3)})
        publisher.publish_one(_state_event(job, State.RUNNING, started_at))
        if kind is None:
            _end(job, publisher, State.FAILED, from_state=State.RUNNING,
                 error=JobError(type="UnknownKind", message=f"no job kind {job.kind!r} on this worker"))
            lease.release()
            return None
        return _running(job, kind, publisher, lease)
    if not wait_until_unheld(job.id, mine=lease):
        logger.info("job %s is running elsewhere (its lease is held): skipping a duplicate delivery", job.id)
        return None
    Job.objects.filter(id=job.id).update(attempts=F("attempts") + 1)
    job.refresh_from_db()
    if outage is not None and job.attempts > option("MAX_ATTEMPTS"):
        error = JobError(type="RedisUnavailable", message=f"{outage} on each of {job.attempts - 1} attempts")
        _end(job, publisher, State.FAILED, from_state=State.RUNNING, error=error)
        lease.release()
        return None
    if kind is None or not kind.redeliver or job.attempts > option("MAX_ATTEMPTS"):
        why = ("its kind is not redelivered" if kind is not None and not kind.redeliver
               else f"after {job.attempts - 1} attempts" if kind is not None else f"no job kind {job.kind!r} on this worker")
        job_fail_lost(job, why, publisher)
        lease.release()
        return None
    lease.take()
    why = "Redis was unreachable" if outage is not None else "its worker was lost"
    publisher.publish_one(
        LogEvent(job_id=str(job.id), ts=time.time(), message=f"restarted after {why} (attempt {job.attempts})")
    )
    jobs_restarted.labels(job.kind).inc()
    return _running(job, kind, publisher, lease)


def job_finish(run: JobRun, state: str, *, result=None, error: JobError | None = None) -> bool:
    """End a running job in `state` (its context is closed: held progress already went out)."""
    try:
        return _end(run.job, run.publisher, state, from_state=State.RUNNING, result=result, error=error)
    finally:
        _uncount(run)


def job_give_up(run: JobRun) -> None:
    """An attempt Redis's absence ended: no longer running here (the job stays `running` for the next one)."""
    _uncount(run)


def job_fail_lost(job: Job, why: str, publisher: JobPublisher | None = None) -> bool:
    """Fail a running job whose worker was lost (for the runner on redelivery, or a reaper)."""
    error = JobError(type="WorkerLost", message=f"the worker running the job was lost ({why})")
    return _end(job, publisher or job_publisher(job), State.FAILED, from_state=State.RUNNING, error=error)


def _state_event(job: Job, state: str, when, *, result=None, error: JobError | None = None) -> StateEvent:
    """The job's state event at `when` (the time written to its row, so documents agree)."""
    return StateEvent(job_id=str(job.id), ts=when.timestamp(), state=state, result=result, error=error)


def _end(job: Job, publisher: JobPublisher, state: str, *, from_state: str, result=None,
         error: JobError | None = None) -> bool:
    """Move the job to a terminal state and publish its last event; False when it had already ended.

    The row is written first, with the seq its terminal event is about to get, so whoever
    sees the terminal event and reads the job finds it ended, and the row carries the seq of
    the job's last event even if Redis is gone for longer than the publisher waits (readers
    then get a reset snapshot with the end, never silence). The event's `ts` is the row's
    `finished_at`, so a client's folded document and a fresh snapshot agree.
    """
    finished_at = timezone.now()
    terminal_seq = publisher.seq + 1
    fields = {"result": result, "error": error.model_dump() if error else None, "finished_at": finished_at,
              "seq": terminal_seq}
    if publisher.latest_progress is not None:
        fields["progress"] = publisher.latest_progress.progress().model_dump()
    if not job_transition(job.id, state, only_from=from_state, **fields):
        logger.warning("job %s could not move to %s (state changed elsewhere)", job.id, state)
        return False
    try:
        published = publisher.publish_one(_state_event(job, state, finished_at, result=result, error=error))
    except RedisUnavailable as exc:
        logger.error("job %s ended %s but its terminal event could not be published: %s", job.id, state, exc)
    else:
        if published.seq != terminal_seq:  # the counter was ahead of this handle (it never is when one worker runs the job)
            Job.objects.filter(id=job.id).update(seq=published.seq)
    jobs_finished.labels(job.kind, state).inc()
    duration = (finished_at - job.started_at).total_seconds() if job.started_at else None
    if duration is not None:
        job_duration.labels(job.kind, state).observe(duration)
    logger.info("job %s (%s) %s", job.id, job.kind, state,
                extra={"kind": job.kind, "state": state, "duration_s": None if duration is None else round(duration, 3)})
    return True
