"""Prometheus metrics of every tier, defined in one place (docs/operations.md has the table).

Names follow Prometheus conventions: a `jobcast_` prefix, base units, `_total` counters,
`_seconds` histograms, and labels with few values (a route template, never a raw path; a
job kind, never a job id). Tiers with several processes (gunicorn workers, Celery's pool) run
in prometheus-client's multiprocess mode: `jobcast run web|worker` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder, and the scrape merges every process's file.

The ws tier's per-event metrics (messages sent, dropped, event and send latency) are
`LoopCounter`/`LoopHistogram`s: plain numbers updated only from the ws process's event-loop
thread, so a delivery pays no lock and no label lookup (a prometheus-client histogram's
observe costs ~0.9 µs, two locks and a walk over the buckets; a delivery costs the ws tier
~12 µs in all). A collector turns them into ordinary counter and histogram families at
scrape time, which runs on the same loop.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from bisect import bisect_left
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from jobcast.processes import process_alive

# No `_created` series: the multiprocess tiers do not have them either, and nothing reads them.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable, set by `jobcast run`

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SEND_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
EVENT_TYPES = ("progress", "log", "state")
SENT_TYPES = ("snapshot", "progress", "log", "state", "error")
DROP_REASONS = ("queue_full", "duplicate")
# Close codes a ws socket ends with (ours, jobcast.events.schema.CloseCode, and the usual client
# ones); anything else a client sends is counted as "other", so the label stays bounded.
CLOSE_CODES = ("1000", "1001", "1005", "1006", "1008", "1009", "1011", "1012", "4404", "4408")
# Handshakes refused, by the code they are closed with (docs/protocol.md).
REFUSALS = {
    "1008": "bad_request", "1012": "server_restarting", "1013": "overloaded",
    "4401": "not_authenticated", "4404": "not_found", "4429": "too_many_connections",
}


# -- web tier ------------------------------------------------------------------------------

http_requests = Counter("jobcast_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
http_request_duration = Histogram(
    "jobcast_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
jobs_submitted = Counter("jobcast_jobs_submitted_total", "Jobs created by a submit (not a repeated Idempotency-Key)", ["kind"])


# -- ws tier: per connection (prometheus-client) ---------------------------------------------

ws_connections = Gauge("jobcast_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
ws_connections_opened = Counter("jobcast_ws_connections_opened_total", "WebSocket connections admitted (authenticated, within the limits)")
ws_connections_closed = Counter("jobcast_ws_connections_closed_total", "Admitted WebSocket connections that ended, by close code", ["code"])
ws_handshakes_refused = Counter(
    "jobcast_ws_handshakes_refused_total", "WebSocket handshakes refused, by close code and reason", ["code", "reason"]
)
ws_groups = Gauge("jobcast_ws_groups", "Channel-layer groups (jobs, users) this ws process is subscribed to in Redis",
                  multiprocess_mode="livesum")
ws_group_joins = Counter("jobcast_ws_group_joins_total", "Sockets that joined a channel-layer group")

# Bound by prebind_ws() in the ws tier only, so the other tiers do not serve these series at 0.
CLOSED_BY_CODE: dict = {}
REFUSED_BY_CODE: dict = {}


def prebind_ws() -> None:
    """Create the ws tier's labelled series at 0 (every close code and refusal reason)."""
    for code in (*CLOSE_CODES, "other"):
        CLOSED_BY_CODE[code] = ws_connections_closed.labels(code)
    for code, reason in REFUSALS.items():
        REFUSED_BY_CODE[int(code)] = ws_handshakes_refused.labels(code, reason)


def count_close(code) -> None:
    """Count an admitted socket that ended with `code` (an unknown code counts as "other")."""
    code = str(code) if str(code) in CLOSE_CODES else "other"
    (CLOSED_BY_CODE.get(code) or ws_connections_closed.labels(code)).inc()


# -- publisher (worker, and web/ws for a cancelled queued job) ----------------------------

events_published = Counter("jobcast_events_published_total", "Job events published", ["type"])
PUBLISHED_BY_TYPE = {kind: events_published.labels(kind) for kind in EVENT_TYPES}
publish_duration = Histogram(
    "jobcast_publish_duration_seconds", "Time of one publish (one Redis round trip for one event or a batch)",
    buckets=LATENCY_BUCKETS,
)
progress_coalesced = Counter(
    "jobcast_progress_coalesced_total",
    "Progress events replaced by a newer one before they were published (JOBCAST_PROGRESS_MAX_RATE)",
)


# -- job lifecycle (jobcast.jobs.services) -----------------------------------------------------

jobs_started = Counter("jobcast_jobs_started_total", "Jobs a worker started (queued to running)", ["kind"])
jobs_restarted = Counter("jobcast_jobs_restarted_total", "Jobs run again after their worker was lost", ["kind"])
jobs_finished = Counter("jobcast_jobs_finished_total", "Jobs that reached a terminal state", ["kind", "state"])
jobs_running = Gauge("jobcast_jobs_running", "Jobs running now", ["kind"], multiprocess_mode="livesum")
job_duration = Histogram("jobcast_job_duration_seconds", "Running time of finished jobs", ["kind", "state"],
                         buckets=JOB_BUCKETS)
job_queue_wait = Histogram("jobcast_job_queue_wait_seconds", "Time from a job's submit to its start", ["kind"],
                           buckets=WAIT_BUCKETS)


def prebind_kinds(kinds: Iterable[str]) -> None:
    """Create the per-kind series at 0 when a tier starts.

    Dashboards then show 0 rather than nothing before the first job, and Prometheus sees the
    first job of a kind as an increase: a series that first appears at 1 has no increase for
    rate() to see, so the first failure after a restart would be invisible to the alerts.
    """
    for kind in kinds:
        jobs_submitted.labels(kind)
        jobs_started.labels(kind)
        jobs_restarted.labels(kind)
        jobs_running.labels(kind)
        job_queue_wait.labels(kind)
        for state in TERMINAL_STATES:
            jobs_finished.labels(kind, state)
            job_duration.labels(kind, state)


# -- ws tier: per event (lock-free, one thread) -------------------------------------------------


class LoopCounter:
    """A counter child touched by one thread only (the ws process's event loop): no lock."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram child touched by one thread only: one bisect and two additions per observation."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # le: amount <= bound
        self.sum += amount


class LoopMetric:
    """A family of LoopCounter or LoopHistogram children, exported by `_LoopCollector`."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = (), buckets=None):
        self.name, self.documentation, self.labelnames, self.buckets = name, documentation, labelnames, buckets
        self.children: dict[tuple[str, ...], LoopCounter | LoopHistogram] = {}
        if not labelnames:
            self.labels()
        _loop_collector.metrics.append(self)

    def labels(self, *values: str):
        """The child for these label values (created once; bind it ahead of the hot path)."""
        child = self.children.get(values)
        if child is None:
            assert len(values) == len(self.labelnames), (self.name, values)
            child = LoopHistogram(self.buckets) if self.buckets else LoopCounter()
            self.children[values] = child
        return child

    def inc(self, amount: float = 1) -> None:
        self.children[()].inc(amount)

    def observe(self, amount: float) -> None:
        self.children[()].observe(amount)

    def family(self):
        if self.buckets is None:
            family = CounterMetricFamily(self.name.removesuffix("_total"), self.documentation, labels=self.labelnames)
            for values, child in list(self.children.items()):
                family.add_metric(values, child.value)
            return family
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self.children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*child.bounds, float("inf")), child.counts):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family.add_metric(values, buckets, child.sum)
        return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _LoopCollector:
    def __init__(self):
        self.metrics: list[LoopMetric] = []

    def describe(self):
        return [metric.family() for metric in self.metrics]

    def collect(self):
        return [metric.family() for metric in self.metrics]


_loop_collector = _LoopCollector()
REGISTRY.register(_loop_collector)

ws_messages_sent = LoopMetric("jobcast_ws_messages_sent_total", "Messages sent to WebSocket clients", ("type",))
SENT_BY_TYPE = {kind: ws_messages_sent.labels(kind) for kind in SENT_TYPES}
ws_messages_dropped = LoopMetric(
    "jobcast_ws_messages_dropped_total",
    "Live events not sent to a socket: its queue was full (it catches up from history), or it already had them",
    ("reason",),
)
DROPPED_QUEUE_FULL = ws_messages_dropped.labels("queue_full")
DROPPED_DUPLICATE = ws_messages_dropped.labels("duplicate")
ws_send_duration = LoopMetric(
    "jobcast_ws_send_duration_seconds", "Time to hand one message to the socket (longer when the client reads slowly)",
    buckets=SEND_BUCKETS,
)
SEND_DURATION = ws_send_duration.labels()
event_latency = LoopMetric(
    "jobcast_event_latency_seconds", "Time from an event's ts (made by the worker) to its WebSocket send",
    buckets=LATENCY_BUCKETS,
)
event_latency_skewed = LoopMetric(
    "jobcast_event_latency_skewed_total",
    "Events whose ts was later than the ws host's clock at send (clock skew between hosts): not in the latency histogram",
)
_EVENT_LATENCY, _EVENT_LATENCY_SKEWED = event_latency.labels(), event_latency_skewed.labels()


def observe_event_latency(ts: float) -> None:
    """Time from the event's ts to now; a negative time (the worker's clock ahead) is counted, not observed."""
    latency = time.time() - ts
    if latency < 0:
        _EVENT_LATENCY_SKEWED.inc()
    else:
        _EVENT_LATENCY.observe(latency)


# -- worker tier: read at scrape time ---------------------------------------------------------


class QueueCollector:
    """`jobcast_queue_depth` and `jobcast_queue_oldest_job_age_seconds`, read from Redis at scrape time.

    kombu's Redis transport LPUSHes messages and the workers BRPOP them, so the next job to
    run (the oldest) is at index -1. Its age comes from the `jobcast_enqueued_at` header that
    `jobcast.jobs.queue.enqueue_job` puts on every message.
    """

    def __init__(self, redis, queue: str):
        self.redis, self.queue = redis, queue

    def collect(self):
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.queue)
        pipe.lindex(self.queue, -1)
        depth, oldest = pipe.execute()
        family = GaugeMetricFamily("jobcast_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        family.add_metric([self.queue], depth)
        yield family
        family = GaugeMetricFamily(
            "jobcast_queue_oldest_job_age_seconds", "Age of the job that has waited longest in the queue (0 when empty)",
            labels=["queue"],
        )
        family.add_metric([self.queue], message_age(oldest))
        yield family


def message_age(raw: bytes | None, now: float | None = None) -> float:
    """Seconds since a queued Celery message was enqueued (0 for none, or one without the header)."""
    if not raw:
        return 0.0
    import orjson

    from jobcast.jobs.queue import ENQUEUED_AT_HEADER

    try:
        enqueued_at = float(orjson.loads(raw)["headers"][ENQUEUED_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, (now or time.time()) - enqueued_at)


class WorkerCollector:
    """The worker's own state, read at scrape time in its main process (jobcast.worker.endpoints)."""

    def __init__(self, consumer_up: Callable[[], bool], pool_processes: Callable[[], int], busy: Callable[[], int]):
        self.consumer_up, self.pool_processes, self.busy = consumer_up, pool_processes, busy

    def collect(self):
        yield GaugeMetricFamily("jobcast_worker_consumer_up",
                                "1 when this worker's Celery consumer is running and consuming the queue",
                                value=1 if self.consumer_up() else 0)
        yield GaugeMetricFamily("jobcast_worker_pool_processes", "Pool processes of this worker (jobs it can run at once)",
                                value=self.pool_processes())
        yield GaugeMetricFamily("jobcast_worker_pool_processes_busy", "Pool processes of this worker running a task now",
                                value=self.busy())


# -- exposition ---------------------------------------------------------------------------------


def prepare_multiprocess_dir(path: Path) -> Path:
    """Empty (or create) the folder where this tier's processes keep their metrics."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_processes(path: str) -> None:
    """Drop the live gauges of processes that are gone without saying so (SIGKILLed, OOM-killed).

    gunicorn tells us when a worker exits (child_exit) and a Celery pool process that stops
    cleanly does too (worker_process_shutdown), but a killed pool process does not: its
    `jobcast_jobs_running` would count forever. Checked at each scrape.
    """
    try:
        names = os.listdir(path)
    except OSError:
        return
    from prometheus_client import multiprocess

    for name in names:
        match = _LIVE_GAUGE_FILE.match(name)
        if match and not process_alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)




def render_latest(*extra_collectors) -> tuple[bytes, str]:
    """The metrics of this process, or of all the tier's processes in multiprocess mode."""
    from jobcast.conf import option
    from prometheus_client import CONTENT_TYPE_LATEST

    registry = CollectorRegistry()
    folder = option("PROMETHEUS_MULTIPROC_DIR")
    if folder:  # web and worker (the ws tier's loop metrics are not theirs)
        forget_dead_processes(folder)
        MultiProcessCollector(registry)
    else:
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
