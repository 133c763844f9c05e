"""Prometheus metrics of every tier, defined in one place (docs/operations.md).

Names follow Prometheus conventions: base units, `_total` counters, `_seconds`
histograms. Tiers with several processes (gunicorn workers, Celery's pool) run in
prometheus-client's multiprocess mode: `jobcast run web|worker` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder, and the scrape merges every process's file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable, set by `jobcast run`

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

# web tier
http_requests = Counter("jobcast_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
http_request_duration = Histogram(
    "jobcast_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# ws tier
ws_connections = Gauge("jobcast_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
ws_messages_sent = Counter("jobcast_ws_messages_sent_total", "Messages sent to WebSocket clients", ["type"])
ws_messages_dropped = Counter(
    "jobcast_ws_messages_dropped_total",
    "Live events not queued for a socket whose queue was full (it catches up from history)",
)
ws_slow_reader_closes = Counter("jobcast_ws_slow_reader_closes_total", "Sockets closed with 4408 (too slow a reader)")
event_latency = Histogram(
    "jobcast_event_latency_seconds", "Time from the worker's publish to the WebSocket send", buckets=LATENCY_BUCKETS
)

# publisher (worker and web)
events_published = Counter("jobcast_events_published_total", "Job events published", ["type"])

# worker tier
jobs_finished = Counter("jobcast_jobs_total", "Jobs that reached a terminal state", ["kind", "state"])
job_duration = Histogram("jobcast_job_duration_seconds", "Running time of finished jobs", ["kind", "state"],
                         buckets=JOB_BUCKETS)


class QueueDepthCollector:
    """`jobcast_queue_depth`: jobs waiting in the Celery queue, read from Redis at scrape time."""

    def __init__(self, redis, queue: str):
        self.redis, self.queue = redis, queue

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("jobcast_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        depth.add_metric([self.queue], self.redis.llen(self.queue))
        yield depth


def prepare_multiprocess_dir(path: Path) -> Path:
    """Empty (or create) the folder where this tier's processes keep their metrics."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def render_latest(*extra_collectors) -> tuple[bytes, str]:
    """The metrics of this process, or of all the tier's processes in multiprocess mode."""
    from django.conf import settings
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    if settings.JOBCAST["PROMETHEUS_MULTIPROC_DIR"]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Everything(REGISTRY))
    for collector in extra_collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Everything:
    """Re-exposes the process's default registry inside a per-scrape registry."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()
