"""Each tier started while nothing listens at REDIS_URL: one clear line, no traceback, no exit, /readyz 503
until Redis starts on that port, then ready (docs/reliability.md, "Redis unreachable at start-up")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from jobcast.cli.stack import free_port
from tests.support import start_redis, stop_process, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def migrated_env(tmp_path_factory) -> dict:
    """An environment for single tiers: its own data dir with a migrated SQLite database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DJANGO_", "DATABASE_URL"))}
    env.update(JOBCAST_DATA_DIR=str(tmp_path_factory.mktemp("tiers")), JOBCAST_LOG_FORMAT="text",
               JOBCAST_WORKER_CONCURRENCY="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "jobcast.cli.main", "manage", "migrate", "--noinput", "-v", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return env


def status(url: str) -> int | None:
    """The HTTP status at `url`, or None while nothing answers."""
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("tier", ["web", "ws", "worker"])
def test_a_tier_started_without_redis_says_so_keeps_trying_and_becomes_ready_when_it_starts(tier, migrated_env, tmp_path):
    redis_port, port = free_port(), free_port()
    env = {**migrated_env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "JOBCAST_WEB_PORT": str(port),
           "JOBCAST_WS_PORT": str(port), "JOBCAST_WORKER_METRICS_PORT": str(port)}
    log = tmp_path / f"{tier}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "jobcast.cli.main", "run", tier], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    redis = None
    try:
        said = f"Redis at 127.0.0.1:{redis_port} cannot be reached"
        wait_until(lambda: said in log.read_text(), 60, f"the {tier} tier to say Redis cannot be reached", interval=0.2)
        if tier == "worker":
            # Its endpoints start once its consumer runs: a probe gets no answer, not ready.
            assert status(f"http://127.0.0.1:{port}/readyz") is None
        else:
            wait_until(lambda: status(f"http://127.0.0.1:{port}/readyz") is not None, 60, f"the {tier} tier to answer")
            readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert readyz.status_code == 503 and readyz.json()["checks"]["redis"].startswith("error"), readyz.text
        # It keeps trying: still the same process a while later, not exited (to be started again).
        time.sleep(3)
        assert process.poll() is None, log.read_text()[-3000:]
        if tier == "worker":  # Celery's consumer says so at each try, each time in one line
            tries = [line for line in log.read_text().splitlines() if "consumer: Cannot connect to" in line]
            assert tries and all("Trying again in" in line for line in tries), log.read_text()[-3000:]

        redis = start_redis(tmp_path / "redis", port=redis_port)
        wait_until(lambda: status(f"http://127.0.0.1:{port}/readyz") == 200, 60, f"the {tier} tier to be ready", interval=0.3)
        if tier == "worker":
            wait_until(lambda: status(f"http://127.0.0.1:{port}/healthz") == 200, 30, "the worker's consumer to run")
        back = f"Redis at 127.0.0.1:{redis_port} answers after"
        wait_until(lambda: back in log.read_text(), 10, f"the {tier} tier to say Redis answers", interval=0.2)
        assert process.poll() is None
        text = log.read_text()
        # One line that says what and why (a reminder would come only after a minute).
        assert [line for line in text.splitlines() if said in line] == [
            line for line in text.splitlines() if said in line and "Connection refused" in line and "not ready" in line]
        assert text.count(said) == 1
        assert "Traceback" not in text, text[-3000:]
    finally:
        stop_process(process, signal.SIGTERM, timeout=40)
        if redis is not None:
            redis.stop()
