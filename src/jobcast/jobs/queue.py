"""The Celery app both sides of the queue share: web enqueues, the worker tier consumes.

It lives in the core (not in services/worker) because the web tier must enqueue with
the same broker, queue and serializer settings, and tiers never import each other.
The task itself (`jobcast.run_job`) is defined in jobcast.worker.tasks. Its configuration
is read from Django's settings when Celery first needs it, so the broker is
option("REDIS_URL"); jobs are enqueued through an app for the REDIS_URL of the moment
(one, in a deployment), so a test that points option("REDIS_URL") at another server
enqueues there too.
"""

from __future__ import annotations

import ssl
import time

from celery import Celery
from jobcast.conf import option
from jobcast.logs import current_request_id

RUN_JOB_TASK = "jobcast.run_job"
QUEUE = "jobcast"

celery_app = Celery("jobcast")


def _broker_tls(url: str) -> dict | bool:
    """TLS for a `rediss://` broker URL: certificates verified unless the URL's `ssl_*` parameters say otherwise.

    kombu takes TLS from the URL's scheme only for its own transport name; with jobcast's
    (below) a bare `rediss://` would connect in plain text. And kombu's own default for one
    is not to verify the server, where redis-py (every other client of REDIS_URL) verifies.
    """
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED} if url.startswith("rediss://") else False


def _celery_settings(broker_url: str | None = None) -> dict:
    broker_url = broker_url or option("REDIS_URL")
    return {
        "broker_url": broker_url,
        "broker_use_ssl": _broker_tls(broker_url),
        # kombu's Redis transport, but a connection lost while jobs run neither stops the
        # worker nor puts those jobs back on the queue (jobcast.jobs.broker).
        "broker_transport": "jobcast.jobs.broker:Transport",
        "broker_connection_retry_on_startup": True,
        # A job is acknowledged only when it has finished, so a worker that dies
        # mid-job leaves it to be delivered again (docs/workers.md).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A running job waits a Redis outage out (docs/workers.md): it is not stopped when the
        # broker connection is lost (Celery 6 will make stopping the default).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": {"visibility_timeout": option("VISIBILITY_TIMEOUT")},
        # On SIGTERM (remapped to Celery's cold shutdown by `jobcast run worker`), running jobs
        # get this long to finish; then they are stopped and their messages go back to the
        # queue at once, for another worker (docs/workers.md).
        "worker_soft_shutdown_timeout": option("WORKER_SHUTDOWN_SECONDS"),
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "worker_hijack_root_logger": False,
        # Celery's task events (what Flower and celery-exporter read) are off unless
        # JOBCAST_CELERY_TASK_EVENTS: a few PUBLISHes per job for listeners jobcast does not
        # need (docs/operations.md, "Celery task events").
        "worker_send_task_events": option("CELERY_TASK_EVENTS"),
        "task_send_sent_event": option("CELERY_TASK_EVENTS"),
        "broker_pool_limit": 10,
    }


celery_app.add_defaults(_celery_settings)
_senders: dict[str, Celery] = {}


def _sender() -> Celery:
    """The app that enqueues on option("REDIS_URL") (made once per URL; its connections are pooled)."""
    url = option("REDIS_URL")
    app = _senders.get(url)
    if app is None:
        app = _senders[url] = Celery("jobcast", set_as_current=False)
        app.add_defaults(lambda: _celery_settings(url))
    return app


ENQUEUED_AT_HEADER = "jobcast_enqueued_at"  # read back by jobcast.metrics.QueueCollector (oldest job's age)
REQUEST_ID_HEADER = "jobcast_request_id"  # the submitting request's id, for the worker's log lines


def enqueue_job(job_id) -> None:
    """Queue a job for a worker (call on commit, so the worker finds the row)."""
    headers = {ENQUEUED_AT_HEADER: time.time()}
    request_id = current_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    _sender().send_task(RUN_JOB_TASK, args=[str(job_id)], queue=QUEUE, headers=headers)
