"""The one error type a user can cause, rendered as JSON (HTTP) or an error frame (WebSocket)."""

from __future__ import annotations


class ApiError(Exception):
    """An error with the contract's body: `{"detail": ..., "errors": [...]}` and an HTTP status."""

    def __init__(self, status: int, detail: str, errors: list | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON body the contract promises for every error."""
        return {"detail": self.detail, "errors": self.errors}


class NotFound(ApiError):
    """A job that does not exist or is not the caller's (the two are indistinguishable)."""

    def __init__(self, detail: str = "Not found."):
        super().__init__(404, detail)


class Conflict(ApiError):
    """The request conflicts with the resource's state (e.g. cancelling a finished job)."""

    def __init__(self, detail: str):
        super().__init__(409, detail)
