"""The Celery task that runs a job: thin, it hands the job id to the runner."""

from jobcast.jobs.queue import REQUEST_ID_HEADER, RUN_JOB_TASK, celery_app
from jobcast.logs import job_id_var, request_id_var
from jobcast.worker.runner import run_job


@celery_app.task(name=RUN_JOB_TASK, ignore_result=True, bind=True)
def run_job_task(self, job_id: str) -> None:
    """Run one job (delivered again if this worker dies before it finishes).

    Its log lines carry the job's id and the id of the request that submitted it.
    """
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(getattr(self.request, REQUEST_ID_HEADER, None))
    try:
        run_job(job_id)
    finally:
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)
