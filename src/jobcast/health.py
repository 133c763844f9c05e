"""Readiness, written once for the three tiers: which dependencies answer (docs/operations.md).

Each tier's /readyz runs the checks it needs (web and ws: database and Redis; the worker:
Redis) through `readiness` and answers with its status and body. The worker's /healthz runs
its consumer check (jobcast.worker.liveness) through the same helper.
"""

from __future__ import annotations

from typing import Callable

from django.db import connection

from jobcast.redis_client import get_redis

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
