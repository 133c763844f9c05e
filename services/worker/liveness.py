"""Whether this worker's Celery consumer is alive and consuming: what the worker's /healthz answers.

A worker process can outlive its consumer: the consumer stuck reconnecting to the broker,
its event loop blocked, or the jobcast queue no longer consumed (`celery control
cancel_consumer`). The process still answers HTTP, so "process alive" would stay green
while no job runs. Like the usual Kubernetes probes for Celery (a consumer bootstep that
touches a heartbeat from the consumer's own timer), a bootstep here ticks every
TICK_SECONDS from the consumer's event loop; the consumer is alive when

- its blueprint is running (not closing or terminating),
- the last tick is at most STALE_SECONDS old (the loop runs: while the consumer reconnects
  to the broker or is blocked, nothing ticks), and
- its task consumer consumes the jobcast queue.

Each check that fails is named in the /healthz body. Celery registers the step's timer
entry with the connection, so a reconnect cancels it and the step's next start adds a new one.
"""

from __future__ import annotations

import time

from celery import bootsteps
from celery.bootsteps import RUN

from jobcast.jobs.queue import QUEUE, celery_app

TICK_SECONDS = 1.0
# Well above a tick, so a busy moment of the loop does not fail the probe; a Kubernetes
# liveness probe restarts the pod only after several failures in a row (docs/kubernetes.md).
STALE_SECONDS = 10.0


class ConsumerNotAlive(Exception):
    """The consumer is not running or not consuming; the message says which check failed."""

    public_detail = True  # shown in the /healthz body (jobcast.health.readiness)


class _State:
    consumer = None  # the worker's Consumer, once its blueprint started this step
    last_tick: float | None = None  # time.monotonic() of the consumer loop's last tick


state = _State()


class LivenessStep(bootsteps.StartStopStep):
    """A consumer bootstep: remembers the consumer and ticks from its event loop."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.entry = None

    def start(self, parent):
        state.consumer = parent
        tick()
        if parent.timer is not None:
            self.entry = parent.timer.call_repeatedly(TICK_SECONDS, tick)

    def stop(self, parent):
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop


def tick() -> None:
    state.last_tick = time.monotonic()


celery_app.steps["consumer"].add(LivenessStep)


def check_consumer() -> None:
    """Raise ConsumerNotAlive unless the consumer runs, ticks and consumes the jobcast queue."""
    consumer = state.consumer
    if consumer is None:
        raise ConsumerNotAlive("the consumer has not started")
    if consumer.blueprint.state != RUN:
        raise ConsumerNotAlive(f"the consumer is {consumer.blueprint.human_state()}")
    age = time.monotonic() - (state.last_tick or 0)
    if age > STALE_SECONDS:
        raise ConsumerNotAlive(f"the consumer's loop has not run for {age:.0f} s")
    task_consumer = consumer.task_consumer
    if task_consumer is None or not task_consumer.consuming_from(QUEUE):
        raise ConsumerNotAlive(f"the consumer does not consume the {QUEUE} queue")


def consumer_alive() -> bool:
    try:
        check_consumer()
    except ConsumerNotAlive:
        return False
    return True


def pool_processes() -> int:
    consumer = state.consumer
    pool = getattr(consumer, "pool", None)
    return int(getattr(pool, "num_processes", 0) or 0)


def busy_processes() -> int:
    """Tasks a pool process is running now (Celery's own record of accepted requests)."""
    from celery.worker import state as worker_state

    return len(worker_state.active_requests)
