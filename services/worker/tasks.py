"""The Celery task that runs a job: thin, it hands the job id to the runner."""

from jobcast.jobs.queue import RUN_JOB_TASK, celery_app
from jobcast.worker.runner import run_job


@celery_app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job_task(job_id: str) -> None:
    """Run one job (delivered again if this worker dies before it finishes)."""
    run_job(job_id)
