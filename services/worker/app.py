"""Celery entry point of the worker tier (celery -A jobcast.worker.app worker)."""

from jobcast import django_setup

django_setup("worker")

from jobcast.jobs.queue import celery_app  # noqa: E402
# Imported for what they register: the task, the operator endpoints, the liveness step, the recovery checks.
from jobcast.worker import endpoints, liveness, recovery, tasks  # noqa: E402,F401

app = celery_app
