"""Readiness, written once for the three tiers: which dependencies answer (docs/operations.md).

Each tier's /readyz runs the checks it needs (web and ws: database and Redis; the worker:
Redis) through `readiness` and answers with its status and body. The worker's /healthz runs
its consumer check (jobcast.worker.liveness) through the same helper.

A tier started while Redis cannot be reached does not exit: `watch_redis_at_start` says so in
one line (no traceback), the tier keeps trying and is not ready meanwhile (web and ws: /readyz
503; the worker's endpoints start once its consumer runs), and a line says when Redis answers (docs/reliability.md, "Redis unreachable at start-up").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import redis
from django.db import connection

from jobcast.conf import option
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)

ALIVE = {"status": "ok"}  # /healthz: the process answers


def check_database() -> None:
    """Raise unless the database answers a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    """Raise unless Redis answers PING."""
    get_redis().ping()


def readiness(checks: dict[str, Callable[[], None]]) -> tuple[int, dict]:
    """Run each check: (200, body) when all pass, else (503, body naming what failed)."""
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            # Only our own checks' messages are shown; a driver's may name hosts and users.
            detail = f": {exc}" if getattr(exc, "public_detail", False) else ""
            results[name] = f"error: {type(exc).__name__}{detail}"
    ready = all(result == "ok" for result in results.values())
    return (200 if ready else 503), {"status": "ok" if ready else "unavailable", "checks": results}


REDIS_START_CHECK_SECONDS = 1.0  # how often a tier started without Redis tries again
REDIS_START_REMINDER_SECONDS = 60.0  # and how often it says that Redis is still away


def redis_address() -> str:
    """host:port of option("REDIS_URL"), for log lines (never its password)."""
    parts = urlsplit(option("REDIS_URL"))
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}" if parts.scheme != "unix" else parts.path


def watch_redis_at_start() -> threading.Thread:
    """Check Redis now and, while it cannot be reached, say so once a minute until it answers (a daemon thread)."""
    thread = threading.Thread(target=_wait_for_redis, name="redis-at-start", daemon=True)
    thread.start()
    return thread


def _wait_for_redis() -> None:
    # A client of its own, never the process's shared one, and short timeouts: a Redis that
    # swallows packets must not hold this thread for minutes.
    client = redis.Redis.from_url(option("REDIS_URL"), socket_connect_timeout=2, socket_timeout=2)
    try:
        _say_until_reachable(client)
    finally:
        client.close()


def _say_until_reachable(client: redis.Redis) -> None:
    started, said = time.monotonic(), None
    while True:
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not reachable yet
            now = time.monotonic()
            if said is None or now - said >= REDIS_START_REMINDER_SECONDS:
                waited = f" for {now - started:.0f} s" if said is not None else ""
                logger.error("Redis at %s cannot be reached%s (%s: %s); trying again every %.0f s, "
                             "not ready (/readyz) until then", redis_address(), waited, type(exc).__name__,
                             " ".join(str(exc).split()), REDIS_START_CHECK_SECONDS)
                said = now
            time.sleep(REDIS_START_CHECK_SECONDS)
            continue
        if said is not None:
            logger.warning("Redis at %s answers after %.0f s: ready", redis_address(), time.monotonic() - started)
        return
