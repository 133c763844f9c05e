"""The one error type a user can cause, and the contract's error body, written once.

Every error a client receives — from the API, Django's own pages, a tier's operator
endpoints — has the body `{"detail": ..., "errors": [...]}` built by `error_body`; the ws
tier turns the same errors into an `error` frame or a close code.
"""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

# What a dependency that is down, restarting or failing over raises: the request may succeed
# later, so the client gets 503 with Retry-After rather than a 500 (docs/protocol.md).
DEPENDENCY_DOWN = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (a restarted Redis loading its data)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica promoted late in a failover
    kombu.exceptions.OperationalError,  # Celery could not reach its broker (Redis) to queue a job
    OperationalError,  # the database refused or dropped the connection
    InterfaceError,
)
RETRY_AFTER_SECONDS = 5


def error_body(detail: str, errors: list | None = None) -> dict:
    """The JSON body the contract promises for every error."""
    return {"detail": detail, "errors": errors or []}


def error_response(status: int, detail: str, errors: list | None = None, headers: dict | None = None) -> JsonResponse:
    """An HTTP error answer with the contract's body."""
    response = JsonResponse(error_body(detail, errors), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def unavailable_response(exc: BaseException) -> JsonResponse:
    """503 for a dependency that is away: which one, and when to try again (never its address or credentials)."""
    which = "the database" if isinstance(exc, (OperationalError, InterfaceError)) else "Redis"
    return not_logged_by_django(error_response(503, f"Service unavailable: {which} cannot be reached. Try again shortly.",
                                               headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))


def not_logged_by_django(response):
    """`response`, marked so that Django does not log it as an ERROR (its own 5xx rule).

    An outage is logged once, as a WARNING, by whoever met it and shows on /readyz; an ERROR
    line for each request during it would drown the errors that are bugs (docs/operations.md).
    """
    response._has_been_logged = True  # the flag django.utils.log.log_response checks
    return response


class ApiError(Exception):
    """An error with the contract's body and an HTTP status (and headers such as Retry-After)."""

    def __init__(self, status: int, detail: str, errors: list | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        """This error as an HTTP answer."""
        return error_response(self.status, self.detail, self.errors, self.headers)


class NotFound(ApiError):
    """A job that does not exist or is not the caller's (the two are indistinguishable)."""

    def __init__(self, detail: str = "Not found."):
        super().__init__(404, detail)


class Conflict(ApiError):
    """The request conflicts with the resource's state (e.g. cancelling a finished job)."""

    def __init__(self, detail: str):
        super().__init__(409, detail)
