"""Celery entry point of the worker tier (celery -A jobcast.worker.app worker)."""

from jobcast import django_setup

django_setup("worker")

from jobcast.jobs.queue import celery_app  # noqa: E402
from jobcast.worker import endpoints, liveness, tasks  # noqa: E402,F401  (registers the task, the endpoints, the liveness step)

app = celery_app
