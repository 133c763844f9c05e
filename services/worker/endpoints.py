"""The worker's operator endpoints: /healthz, /readyz and /metrics on JOBCAST_WORKER_METRICS_PORT.

Celery has no HTTP server, so the worker's main process runs a small one in a thread,
started when the worker is ready; the pool processes write their metrics to the shared
multiprocess folder that /metrics merges (jobcast.metrics). /healthz answers 503 when the
Celery consumer is not running or not consuming the queue (jobcast.worker.liveness), so a
liveness probe restarts a worker that would otherwise sit idle with its process alive.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from http import HTTPStatus
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import bootsteps
from celery.signals import setup_logging, worker_process_shutdown, worker_ready

from jobcast.conf import option
from jobcast.errors import error_body
from jobcast.health import check_redis, readiness, watch_redis_at_start
from jobcast.logs import tier_logging
from jobcast.jobs.queue import QUEUE, celery_app
from jobcast.jobs.registry import all_kinds
from jobcast.metrics import QueueCollector, WorkerCollector, prebind_kinds, render_latest
from jobcast.redis_client import get_redis
from jobcast.worker.liveness import busy_processes, check_consumer, consumer_alive, pool_processes

logger = logging.getLogger(__name__)


def operator_app(environ, start_response):
    """WSGI app for the worker's health and metrics endpoints."""
    path = environ.get("PATH_INFO", "")
    if path == "/metrics":
        body, content_type = render_latest(
            QueueCollector(get_redis(), QUEUE), WorkerCollector(consumer_alive, pool_processes, busy_processes)
        )
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    if path == "/healthz":
        return _json(start_response, *readiness({"consumer": check_consumer}))
    if path == "/readyz":
        return _json(start_response, *readiness({"redis": check_redis}))
    return _json(start_response, 404, error_body("Not found."))


def _json(start_response, status: int, body: dict) -> list[bytes]:
    start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every few seconds would flood the log
        pass


def serve_operator_endpoints(host: str, port: int) -> WSGIServer:
    """Start the endpoints in a daemon thread; returns the server."""
    server = make_server(host, port, operator_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="operator-endpoints", daemon=True).start()
    logger.info("worker endpoints on %s:%d (/healthz, /readyz, /metrics)", host, port)
    return server


class OneLine(logging.Filter):
    """Celery's "Cannot connect to redis://…: <error>.\nTrying again in 2.00 seconds... (1/None)" as one line."""

    def filter(self, record):
        message = record.getMessage()
        if "\n" in message:
            # "/None": the consumer tries again as long as it takes (jobcast.jobs.queue).
            record.msg, record.args = " ".join(message.split()).replace("/None)", ")"), None
        return True


@setup_logging.connect
def _use_jobcast_logging(**kwargs):
    """Celery leaves logging alone when this signal has a receiver: jobcast's format (jobcast.logs) stays."""
    import logging.config

    logging.config.dictConfig(tier_logging())
    logging.getLogger("celery.worker.consumer.consumer").addFilter(OneLine())


class SayIfRedisIsAway(bootsteps.StartStopStep):
    """A worker started while Redis cannot be reached says so in one line, and again when it answers.

    After the pool has forked its processes (a thread caught mid-import or mid-call by a fork
    would leave them a lock nobody releases) and before the consumer connects; the endpoints
    start once the consumer runs.
    """

    requires = {"celery.worker.components:Pool"}

    def start(self, worker):
        watch_redis_at_start()


celery_app.steps["worker"].add(SayIfRedisIsAway)


@worker_ready.connect
def _start_endpoints(**kwargs):
    prebind_kinds(kind.name for kind in all_kinds())
    port = option("WORKER_METRICS_PORT")
    if port:
        try:
            serve_operator_endpoints(option("BIND"), port)
        except OSError as exc:  # a taken port must not stop the worker from running jobs
            logger.error("worker endpoints not started on port %d: %s", port, exc)


@worker_process_shutdown.connect
def _forget_pool_process(pid=None, **kwargs):
    if option("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
