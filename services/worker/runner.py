"""Running one job on a worker: start it, give the author a context, end it in exactly one terminal state.

The lifecycle (start, redelivery, worker loss, the terminal event) is jobcast.jobs.services';
this module only calls the kind's function between `job_start` and `job_finish`. A Redis
outage is not the job's fault: the publisher waits it out (JOBCAST_REDIS_RETRY_SECONDS), and
when it lasts longer the attempt is given up and the job runs again after a pause, up to
JOBCAST_MAX_ATTEMPTS, then fails with `RedisUnavailable` (docs/workers.md).
"""

from __future__ import annotations

import logging
import time

import orjson
from jobcast.conf import option
from jobcast.events.publisher import REDIS_DOWN, RedisUnavailable
from jobcast.events.schema import JobError
from jobcast.jobs.context import JobCancelled, JobContext
from jobcast.jobs.services import JobRun, job_cancel_requested, job_finish, job_give_up, job_start
from jobcast.jobs.states import State

logger = logging.getLogger(__name__)

OUTAGE_PAUSE_SECONDS = (1.0, 5.0, 15.0)  # before each new attempt after an outage (then the last one)


def run_job(job_id: str) -> None:
    """Run the job with this id to a terminal state (nothing to do when it already is in one)."""
    outage, pauses, lease = None, iter(OUTAGE_PAUSE_SECONDS), None
    try:
        while True:
            try:
                run = job_start(job_id, outage=outage, lease=lease)
                if run is None:
                    return
                lease = run.lease  # kept across attempts after an outage: this worker still runs the job
                _run(run)
                return
            except RedisUnavailable as exc:
                outage = exc
                pause = next(pauses, OUTAGE_PAUSE_SECONDS[-1])
                logger.warning("job %s: %s; trying it again in %.0f s", job_id, exc, pause)
                time.sleep(pause)
    finally:
        if lease is not None:
            lease.release()


def _run(run: JobRun) -> None:
    """One attempt: the kind's function with a context, then the terminal state."""
    job = run.job
    ctx = JobContext(
        run.publisher,
        cancel_requested=lambda: _cancel_requested(job.id),
        max_rate=option("PROGRESS_MAX_RATE"),
        cancel_check_interval=option("CANCEL_CHECK_INTERVAL"),
        attempt=max(job.attempts, 1),
    )
    state, result, error = State.SUCCEEDED, None, None
    try:
        params = run.kind.params.model_validate(job.params)
        result = run.kind.func(ctx, params)
        orjson.dumps(result)  # a result that cannot be stored fails the job, not the worker
    except JobCancelled:
        state, result = State.CANCELLED, None
    except RedisUnavailable:
        ctx.abandon()
        job_give_up(run)
        raise  # infrastructure, not the author's: the attempt is tried again
    except Exception as exc:  # noqa: BLE001 - an author's exception ends the job, not the worker
        logger.exception("job %s (%s) failed", job.id, job.kind)
        state, result, error = State.FAILED, None, JobError(type=type(exc).__name__, message=str(exc)[:2000])
    try:
        ctx.close()  # held progress goes out before the terminal event
    except RedisUnavailable as exc:
        # The work is done: end the job with its outcome rather than run it again.
        logger.error("job %s: its last progress could not be published: %s", job.id, exc)
    job_finish(run, state, result=result, error=error)


def _cancel_requested(job_id) -> bool:
    """Whether the job's cancel flag is set; while Redis is away, not (the next publish waits for it)."""
    try:
        return job_cancel_requested(job_id)
    except REDIS_DOWN:
        return False
