"""Running one job on a worker: start it, give the author a context, end it in exactly one terminal state.

The lifecycle (start, redelivery, worker loss, the terminal event) is jobcast.jobs.services';
this module only calls the kind's function between `job_start` and `job_finish`.
"""

from __future__ import annotations

import logging

import orjson
from django.conf import settings

from jobcast.events.schema import JobError
from jobcast.jobs.context import JobCancelled, JobContext
from jobcast.jobs.services import job_cancel_requested, job_finish, job_start
from jobcast.jobs.states import State

logger = logging.getLogger(__name__)


def run_job(job_id: str) -> None:
    """Run the job with this id to a terminal state (nothing to do when it already is in one)."""
    run = job_start(job_id)
    if run is None:
        return
    job = run.job
    ctx = JobContext(
        run.publisher,
        cancel_requested=lambda: job_cancel_requested(job.id),
        max_rate=settings.JOBCAST["PROGRESS_MAX_RATE"],
        cancel_check_interval=settings.JOBCAST["CANCEL_CHECK_INTERVAL"],
        attempt=max(job.attempts, 1),
    )
    state, result, error = State.SUCCEEDED, None, None
    try:
        params = run.kind.params.model_validate(job.params)
        result = run.kind.func(ctx, params)
        orjson.dumps(result)  # a result that cannot be stored fails the job, not the worker
    except JobCancelled:
        state, result = State.CANCELLED, None
    except Exception as exc:  # noqa: BLE001 - an author's exception ends the job, not the worker
        logger.exception("job %s (%s) failed", job.id, job.kind)
        state, result, error = State.FAILED, None, JobError(type=type(exc).__name__, message=str(exc)[:2000])
    finally:
        ctx.close()  # held progress goes out before the terminal event
    job_finish(run, state, result=result, error=error)
