"""Operator endpoints of the web tier: /healthz (alive), /readyz (database and Redis answer), /metrics."""

from __future__ import annotations

from django.db import connection
from django.http import HttpResponse, JsonResponse

from jobcast.metrics import render_latest

from jobcast.redis_client import get_redis


def healthz(request):
    """The process is alive."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """The database and Redis answer; 503 otherwise."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def metrics(request):
    """Prometheus metrics of every process of this web instance."""
    body, content_type = render_latest()
    return HttpResponse(body, content_type=content_type)
