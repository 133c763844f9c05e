"""Celery entry point of the worker tier (celery -A jobcast.worker.app worker)."""

from jobcast import django_setup

django_setup()

from jobcast.jobs.queue import celery_app  # noqa: E402
from jobcast.worker import endpoints, recovery, tasks  # noqa: E402,F401  (registers the task, endpoints, recovery checks)

app = celery_app
