"""The worker's /healthz follows its Celery consumer, on a real worker (`jobcast run worker`).

Two ways a consumer stops while its process lives on, both done for real:
- its queue is no longer consumed (Celery's own remote control, `cancel_consumer`);
- its broker goes away: the consumer leaves its event loop to reconnect, so nothing ticks.
Each time /healthz turns 503 naming the failed check, `jobcast_worker_consumer_up` turns 0,
and both recover when the consumer does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from jobcast.cli.stack import free_port
from tests.support import start_redis, stop_process, wait_until

pytestmark = [pytest.mark.e2e]


def health(port: int) -> tuple[int, dict]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.TransportError:
        return 0, {}
    return response.status_code, response.json()


def consumer_up(port: int) -> str:
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return next(line.split()[-1] for line in body.splitlines() if line.startswith("jobcast_worker_consumer_up "))


@pytest.fixture
def worker(tmp_path):
    """A real worker on its own Redis (so the test can stop that Redis), with its endpoints on a free port."""
    redis = start_redis(tmp_path / "redis")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DATABASE_URL"))}
    env.update(REDIS_URL=redis.url, JOBCAST_DATA_DIR=str(tmp_path), JOBCAST_WORKER_METRICS_PORT=str(port),
               JOBCAST_WORKER_CONCURRENCY="1", JOBCAST_LOG_FORMAT="text", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "worker.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "jobcast.cli.main", "run", "worker"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: health(port)[0] == 200, 60, "the worker's /healthz to answer 200")
        yield redis, port, process, tmp_path / "worker.log"
    finally:
        stop_process(process, signal.SIGTERM, timeout=30)
        log.close()
        redis.stop()


def control(redis_url: str, command: str) -> None:
    """Celery's remote control, as `celery -A jobcast.worker.app control <command> jobcast` would send it."""
    from celery import Celery

    app = Celery(broker=redis_url)
    try:
        getattr(app.control, command)("jobcast", reply=True, timeout=5)
    finally:
        app.close()


def test_healthz_fails_while_the_queue_is_not_consumed(worker):
    redis, port, process, log = worker
    assert health(port) == (200, {"status": "ok", "checks": {"consumer": "ok"}})
    assert consumer_up(port) == "1.0"

    control(redis.url, "cancel_consumer")
    wait_until(lambda: health(port)[0] == 503, 10, "/healthz to fail")
    assert "does not consume the jobcast queue" in health(port)[1]["checks"]["consumer"]
    assert consumer_up(port) == "0.0"
    assert process.poll() is None  # the process is alive: "process alive" would have said 200

    control(redis.url, "add_consumer")
    wait_until(lambda: health(port)[0] == 200, 10, "/healthz to recover")


def test_healthz_fails_while_the_consumer_has_lost_its_broker(worker):
    redis, port, process, log = worker
    stop_process(redis.process, signal.SIGKILL)
    status, body = wait_until(lambda: (lambda h: h if h[0] == 503 else None)(health(port)), 40,
                              "/healthz to fail without a broker")
    assert body["checks"]["consumer"].startswith("error: ConsumerNotAlive"), body
    assert process.poll() is None
    # The same Redis comes back on the same port: the consumer reconnects and /healthz recovers.
    redis.process = subprocess.Popen(
        [redis.process.args[0], "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: health(port)[0] == 200, 90, "/healthz to recover once the broker is back")
    assert consumer_up(port) == "1.0"
