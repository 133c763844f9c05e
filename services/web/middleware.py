"""Web tier middleware: request metrics, JSON error bodies, oversized bodies refused with JSON 413,
and the operator endpoints served without the host check."""

from __future__ import annotations

import time

from django.conf import settings
from django.urls import resolve

from jobcast.errors import DEPENDENCY_DOWN, error_response, unavailable_response
from jobcast.metrics import http_request_duration, http_requests


class RequestMetricsMiddleware:
    """Counts and times every request by route pattern (never by raw path: bounded labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = f"/{match.route}" if match is not None and match.route else "unmatched"
        http_requests.labels(route, request.method, str(response.status_code)).inc()
        http_request_duration.labels(route, request.method).observe(time.perf_counter() - started)
        return response


class JsonErrorMiddleware:
    """Every error answers with the contract's `{"detail", "errors"}` JSON body, whoever made it.

    A few errors come from code that answers in plain text (ninja's 405 "Method not
    allowed", for one); such a response is replaced by the JSON body, with the same status
    and headers (`Allow`, `Retry-After`, ...). A view that fails because Redis or the
    database is away answers 503 with `Retry-After` (the API's own handler does the same).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def process_exception(self, request, exception):
        if isinstance(exception, DEPENDENCY_DOWN):
            return unavailable_response(exception)
        return None

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
            return response
        headers = {name: value for name, value in response.headers.items()
                   if name.lower() not in ("content-type", "content-length")}
        replacement = error_response(response.status_code, f"{response.reason_phrase}.", headers=headers)
        replacement.cookies = response.cookies
        return replacement


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over JOBCAST_MAX_BODY_BYTES (chunked bodies: jobcast.web.bodies)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.JOBCAST["MAX_BODY_BYTES"]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return error_response(413, f"Request body too large: at most {limit} bytes.")
        return self.get_response(request)


class OperatorEndpointsMiddleware:
    """/healthz, /readyz and /metrics answered before CommonMiddleware's ALLOWED_HOSTS check.

    Probes and Prometheus reach each web instance by its address (in docker compose,
    `Host: 172.18.0.5:8001`; a kubelet uses the pod IP), which is no public host name, so
    CommonMiddleware would answer them 400 DisallowedHost. These three views never build
    a URL from the Host header, so they need no host check; everything else still gets
    it. nginx keeps /metrics away from the public (deploy/nginx/jobcast.conf.template).
    Placed after the metrics and JSON-error middleware, so they are counted and a
    failure is still JSON.
    """

    PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
