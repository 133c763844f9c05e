"""A real Celery worker (jobcast's app, transport and settings) whose broker connection is lost
while a task runs: the worker rides it out in place (jobcast.jobs.broker, docs/reliability.md).

Without jobcast's transport, Celery 5.7.0 with kombu 5.7.0 stops such a worker with
"Unrecoverable error: AttributeError(... 'hostname')" once its task ends, and a message
still unacknowledged is put back on the queue while its task runs.
"""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import kombu
import pytest
import redis as redis_py

from jobcast.cli.stack import free_port
from jobcast.cli.tiers import tier_command
from jobcast.jobs.queue import QUEUE, celery_app
from tests.integration.broker_app import hold, runs_of
from tests.support import REPO, start_redis, stop_process, wait_until

pytestmark = [pytest.mark.e2e]  # starts a real worker process


class Worker:
    """`jobcast run worker`'s command line and signal mapping, with tests.integration.broker_app, on its own Redis."""

    def __init__(self, tmp_path, redis, **env):
        self.port = free_port()
        self.log = tmp_path / "worker.log"
        command = ["tests.integration.broker_app" if part == "jobcast.worker.app" else part
                   for part in tier_command("worker")]
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DATABASE_URL"))}
        environ.update(REDIS_URL=redis.url, JOBCAST_DATA_DIR=str(tmp_path), JOBCAST_WORKER_METRICS_PORT=str(self.port),
                       JOBCAST_WORKER_CONCURRENCY="2", JOBCAST_LOG_FORMAT="text", JOBCAST_LOG_LEVEL="info",
                       PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **env)
        environ["REMAP_SIGTERM"] = "SIGQUIT"  # as `jobcast run worker` sets it (jobcast.cli.run)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, env=environ, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self.healthz() == 200, 60, "the worker's /healthz to answer 200")

    def healthz(self) -> int:
        """The worker's /healthz status (0 when it does not answer)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code
        except httpx.TransportError:
            return 0

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, timeout=30)


@pytest.fixture
def broker(tmp_path):
    """A Redis of the test's own (so the test can stop it), and a worker on it; the Redis is `servers[0]`."""
    servers = [start_redis(tmp_path / "redis")]
    worker = Worker(tmp_path, servers[0])
    try:
        yield servers, worker
    finally:
        worker.stop()
        for server in servers:
            server.stop()


def send_hold(redis_url: str, seconds: float, runs) -> None:
    hold.apply_async(args=[seconds, str(runs)], queue=QUEUE, connection=hold.app.connection_for_write(redis_url))


def assert_rode_it_out(worker: Worker, pid: int) -> None:
    """The same worker process, alive, with no error of the kind the defect showed."""
    assert worker.process.poll() is None and worker.process.pid == pid
    log = worker.log.read_text()
    assert "Unrecoverable error" not in log and "AttributeError" not in log and "Couldn't ack" not in log, log[-3000:]


def test_a_worker_rides_out_a_redis_restart_while_a_task_runs(broker, tmp_path):
    servers, worker = broker
    redis = servers[0]
    first, after = tmp_path / "first", tmp_path / "after"
    send_hold(redis.url, 8, first)
    wait_until(lambda: runs_of(first) == ["started"], 30, "the task to start")

    redis.stop()
    # While Redis is away the consumer is not consuming, and /healthz says so.
    wait_until(lambda: worker.healthz() == 503, 30, "/healthz to fail while the broker is away")
    servers.append(start_redis(tmp_path / "redis", redis.port))  # empty, on the same port
    wait_until(lambda: worker.healthz() == 200, 60, "/healthz to recover once the broker is back")

    # The task ran through to its end, once, and the worker still takes new work.
    wait_until(lambda: runs_of(first) == ["started", "ended"], 30, "the task to end")
    send_hold(redis.url, 0, after)
    wait_until(lambda: runs_of(after) == ["started", "ended"], 30, "a task sent after the outage to run")
    assert runs_of(first) == ["started", "ended"]
    assert_rode_it_out(worker, worker.process.pid)


def cut_connections(redis_url: str) -> None:
    """Close every client connection of this Redis (as a network cut would), keeping its data."""
    client = redis_py.Redis.from_url(redis_url)
    for kind in ("normal", "pubsub"):
        client.client_kill_filter(_type=kind, skipme=True)
    client.close()


def test_a_cut_connection_neither_requeues_the_running_task_nor_loses_its_ack(broker, tmp_path):
    servers, worker = broker
    redis = servers[0]
    client = redis_py.Redis.from_url(redis.url)
    first = tmp_path / "first"
    send_hold(redis.url, 6, first)
    wait_until(lambda: runs_of(first) == ["started"], 30, "the task to start")
    assert client.hlen("unacked") == 1

    cut_connections(redis.url)
    wait_until(lambda: runs_of(first) == ["started", "ended"], 30, "the task to end")
    # Not put back on the queue while it ran (so not run twice), and acknowledged after the
    # reconnect, through a new connection: nothing is left for the visibility timeout.
    wait_until(lambda: client.hlen("unacked") == 0, 10, "the task's ack to reach Redis")
    assert client.llen(QUEUE) == 0 and runs_of(first) == ["started", "ended"]
    assert worker.healthz() == 200
    assert_rode_it_out(worker, worker.process.pid)


def test_a_sigterm_after_a_cut_still_hands_the_running_task_back(tmp_path):
    redis = start_redis(tmp_path / "redis")
    worker = Worker(tmp_path, redis, JOBCAST_WORKER_SHUTDOWN_SECONDS="1")
    try:
        client = redis_py.Redis.from_url(redis.url)
        first = tmp_path / "first"
        send_hold(redis.url, 60, first)
        wait_until(lambda: runs_of(first) == ["started"], 30, "the task to start")
        cut_connections(redis.url)
        wait_until(lambda: "Connection to broker lost" in worker.log.read_text(), 30, "the worker to see the cut")
        wait_until(lambda: worker.healthz() == 200, 60, "the worker to reconnect")

        worker.stop()
        # The task (delivered before the cut) was stopped after the soft shutdown timeout and
        # its message went back on the queue for another worker.
        assert client.llen(QUEUE) == 1 and client.hlen("unacked") == 0
        assert runs_of(first) == ["started"]
    finally:
        worker.stop()
        redis.stop()


def test_a_collected_channel_acks_through_a_new_connection_then_lets_its_pool_go(tmp_path):
    """What Celery's consumer does at a connection loss (`collect()`, then `close()`), in process."""
    redis = start_redis(tmp_path / "redis")
    client = redis_py.Redis.from_url(redis.url)
    queue = kombu.Queue("broker-loss", routing_key="broker-loss")
    connection = kombu.Connection(redis.url, transport=celery_app.conf.broker_transport)
    try:
        connection.default_channel.basic_qos(0, 2, False)  # room for another message: a BRPOP waits
        connection.Producer().publish({"n": 1}, routing_key="broker-loss", declare=[queue])
        delivered = []
        connection.Consumer(queue, callbacks=[lambda body, message: delivered.append(message)], accept=["json"]).consume()
        connection.drain_events(timeout=5)
        (message,) = delivered
        channel = message.channel
        assert client.hlen("unacked") == 1

        cut_connections(redis.url)
        connection.collect()
        connection.close()
        assert channel.collected and channel._pool is not None
        # The message was not put back on the queue while its task runs...
        assert client.llen("broker-loss") == 0 and client.hlen("unacked") == 1
        # ...and its ack, after the loss, reaches Redis through a new connection of the channel's pool,
        # which is then closed: nothing of the lost connection stays open.
        message.ack()
        assert client.hlen("unacked") == 0 and channel._pool is None
        wait_until(lambda: len(client.client_list()) == 1, 5, "every connection but the test's own to close")
    finally:
        connection.release()
        client.close()
        redis.stop()
