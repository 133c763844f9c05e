"""Operator endpoints of the web tier: /healthz (alive), /readyz (database and Redis answer), /metrics."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse

from jobcast.errors import not_logged_by_django
from jobcast.health import ALIVE, check_database, check_redis, readiness
from jobcast.metrics import render_latest


def healthz(request):
    """The process is alive."""
    return JsonResponse(ALIVE)


def readyz(request):
    """The database and Redis answer; 503 otherwise."""
    status, body = readiness({"database": check_database, "redis": check_redis})
    return not_logged_by_django(JsonResponse(body, status=status))


def metrics(request):
    """Prometheus metrics of every process of this web instance."""
    body, content_type = render_latest()
    return HttpResponse(body, content_type=content_type)
