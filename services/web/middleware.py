"""Web tier middleware: request metrics, JSON error bodies, oversized bodies refused with JSON 413,
and the operator endpoints served without the host check."""

from __future__ import annotations

import logging
import time

from jobcast.conf import option
from django.urls import resolve

from jobcast.errors import DEPENDENCY_DOWN, error_response, unavailable_response
from jobcast.logs import REQUEST_ID_HEADER, clean_request_id, request_id_var
from jobcast.metrics import http_request_duration, http_requests

access_logger = logging.getLogger("jobcast.web.access")
logger = logging.getLogger(__name__)
OPERATOR_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestContextMiddleware:
    """Gives each request an id (nginx's X-Request-ID, or a new one), echoes it, and logs one line per request.

    The id is in every log line the request causes (jobcast.logs), in the answer's
    X-Request-ID, and travels with a submitted job to the worker's lines. Probes and scrapes
    of the operator endpoints are logged at DEBUG only.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            match = getattr(request, "resolver_match", None)
            access_logger.log(
                logging.DEBUG if request.path_info in OPERATOR_PATHS else logging.INFO,
                "%s %s %s", request.method, request.path, response.status_code,
                extra={"method": request.method, "route": f"/{match.route}" if match is not None and match.route else None,
                       "status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
            )
            return response
        finally:
            request_id_var.reset(token)


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
            logger.warning("%s %s: a dependency is unavailable: %s", request.method, request.path, type(exception).__name__)
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
        limit = option("MAX_BODY_BYTES")
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

    PATHS = OPERATOR_PATHS

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
