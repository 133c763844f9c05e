"""The Celery task that runs a job: thin, it hands the job id to the runner."""

import logging

from django.db import InterfaceError, OperationalError

from jobcast.jobs.queue import REQUEST_ID_HEADER, RUN_JOB_TASK, celery_app
from jobcast.logs import job_id_var, request_id_var
from jobcast.worker.runner import run_job

logger = logging.getLogger(__name__)

# While the database is away a delivered job can be neither started nor ended: its message is
# sent again after this pause (as often as it takes) rather than acknowledged as done.
DATABASE_RETRY_SECONDS = 5


@celery_app.task(name=RUN_JOB_TASK, ignore_result=True, bind=True, max_retries=None)
def run_job_task(self, job_id: str) -> None:
    """Run one job (delivered again if this worker dies before it finishes).

    Its log lines carry the job's id and the id of the request that submitted it. When the
    database cannot be reached the job is delivered again DATABASE_RETRY_SECONDS later: a
    queued job then starts, a running one (its lease given back) runs again, attempts + 1.
    """
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(getattr(self.request, REQUEST_ID_HEADER, None))
    try:
        run_job(job_id)
    except (OperationalError, InterfaceError) as exc:
        logger.warning("job %s: the database cannot be reached (%s); delivering it again in %d s",
                       job_id, type(exc).__name__, DATABASE_RETRY_SECONDS)
        raise self.retry(countdown=DATABASE_RETRY_SECONDS, exc=exc) from None
    finally:
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)
