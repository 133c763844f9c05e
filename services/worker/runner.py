"""Running one job: start it, give the author a context, end it in exactly one terminal state.

A job found `running` when delivered was being run by a worker that died: it runs
again (attempts grows) unless its kind says `redeliver=False` or it ran out of
attempts (JOBCAST_MAX_ATTEMPTS), in which case it fails with `WorkerLost`.
"""

from __future__ import annotations

import logging
import time

import orjson
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from jobcast.events.publisher import publish_event, publish_events
from jobcast.events.schema import JobError, LogEvent, StateEvent
from jobcast.jobs.context import JobCancelled, JobContext
from jobcast.jobs.models import Job
from jobcast.jobs.registry import get_kind
from jobcast.jobs.services import cancel_requested, job_transition
from jobcast.jobs.states import State, is_terminal
from jobcast.metrics import job_duration, jobs_finished

logger = logging.getLogger(__name__)

# The row's progress snapshot is refreshed at most this often while a job runs; live
# readers get the exact value from Redis, the row only has to stay close.
DB_PROGRESS_INTERVAL = 5.0


class _RowProgressWriter:
    """Wraps the publisher to copy progress and seq to the job row now and then."""

    def __init__(self, job: Job):
        self.job = job
        self.last_write = time.monotonic()
        self.ctx: JobContext | None = None

    def __call__(self, events, owner_id, **kwargs):
        floor = max(self.job.seq, self.ctx.last_seq if self.ctx else 0)
        published = publish_events(events, owner_id, seq_floor=floor, **kwargs)
        now = time.monotonic()
        if now - self.last_write >= DB_PROGRESS_INTERVAL and self.ctx and self.ctx.latest_progress:
            self.last_write = now
            Job.objects.filter(id=self.job.id).update(
                progress=self.ctx.latest_progress.model_dump(), seq=published.seq
            )
        return published


def _state_event(job: Job, state: str, result=None, error: JobError | None = None) -> StateEvent:
    return StateEvent(job_id=str(job.id), ts=time.time(), state=state, result=result, error=error)


def _start(job: Job, kind) -> bool:
    """Move the job to running (or account for a redelivery); False when it must not run."""
    if job.state == State.QUEUED:
        if not job_transition(job.id, State.RUNNING, attempts=F("attempts") + 1):
            return False  # cancelled while queued
        publish_event(_state_event(job, State.RUNNING), job.owner_id, seq_floor=job.seq)
        return True
    # Running: the worker that had it died (its message was delivered again).
    Job.objects.filter(id=job.id).update(attempts=F("attempts") + 1)
    job.refresh_from_db()
    if not kind.redeliver or job.attempts > settings.JOBCAST["MAX_ATTEMPTS"]:
        why = "its kind is not redelivered" if not kind.redeliver else f"after {job.attempts - 1} attempts"
        _finish(job, None, State.FAILED, error=JobError(type="WorkerLost", message=f"the worker running the job was lost ({why})"))
        return False
    publish_event(
        LogEvent(job_id=str(job.id), ts=time.time(), message=f"restarted after its worker was lost (attempt {job.attempts})"),
        job.owner_id,
        seq_floor=job.seq,
    )
    return True


def _finish(job: Job, ctx: JobContext | None, state: str, result=None, error: JobError | None = None) -> None:
    """End the job: flush held progress, write the row, publish the terminal state event."""
    progress = {}
    if ctx is not None:
        ctx.close()
        if ctx.latest_progress:
            progress = {"progress": ctx.latest_progress.model_dump()}
    moved = job_transition(
        job.id, state, result=result, error=error.model_dump() if error else None, **progress
    )
    if not moved:
        logger.warning("job %s could not move to %s (state changed elsewhere)", job.id, state)
        return
    floor = max(job.seq, ctx.last_seq if ctx is not None else 0)
    published = publish_event(_state_event(job, state, result, error), job.owner_id, terminal=True, seq_floor=floor)
    Job.objects.filter(id=job.id).update(seq=published.seq)
    jobs_finished.labels(job.kind, state).inc()
    if job.started_at:
        job_duration.labels(job.kind, state).observe((timezone.now() - job.started_at).total_seconds())


def run_job(job_id: str) -> None:
    """Run the job with this id to a terminal state (nothing to do when it already is in one)."""
    job = Job.objects.filter(id=job_id).first()
    if job is None or is_terminal(job.state):
        return
    kind = get_kind(job.kind)
    if kind is None:
        if job_transition(job.id, State.RUNNING, attempts=F("attempts") + 1):
            _finish(job, None, State.FAILED, error=JobError(type="UnknownKind", message=f"no job kind {job.kind!r} on this worker"))
        return
    if not _start(job, kind):
        return
    job.refresh_from_db(fields=["started_at", "attempts"])
    writer = _RowProgressWriter(job)
    ctx = JobContext(
        str(job.id),
        job.owner_id,
        publish=writer,
        cancel_requested=lambda: cancel_requested(job.id),
        max_rate=settings.JOBCAST["PROGRESS_MAX_RATE"],
        cancel_check_interval=settings.JOBCAST["CANCEL_CHECK_INTERVAL"],
        attempt=max(job.attempts, 1),
    )
    writer.ctx = ctx
    try:
        params = kind.params.model_validate(job.params)
        result = kind.func(ctx, params)
        orjson.dumps(result)  # a result that cannot be stored fails the job, not the worker
    except JobCancelled:
        _finish(job, ctx, State.CANCELLED)
    except Exception as exc:  # noqa: BLE001 - an author's exception ends the job, not the worker
        logger.exception("job %s (%s) failed", job.id, job.kind)
        _finish(job, ctx, State.FAILED, error=JobError(type=type(exc).__name__, message=str(exc)[:2000]))
    else:
        _finish(job, ctx, State.SUCCEEDED, result=result)
