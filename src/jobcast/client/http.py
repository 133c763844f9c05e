"""The HTTP half of the Python client: submit, read, list and cancel jobs (docs/clients.md).

Every answer is parsed into the wire format's own models (jobcast.events.schema), and every
error answer becomes an `ApiError` carrying the contract's `{"detail", "errors"}` body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import quote

import httpx
from pydantic import Field

from jobcast.client.config import load_client_config
from jobcast.client.watch import Backoff, JobWatch, ws_url_for
from jobcast.events.schema import (ErrorOut, Event, JobDocument, JobPage, KindOut, TicketOut,
                                   parse_event)
from jobcast.jobs.states import State


class ClientError(Exception):
    """Something the client could not do; `ApiError` and `Unreachable` say which."""


class Unreachable(ClientError):
    """No answer from the server (refused, timed out, DNS): worth retrying later."""


class ApiError(ClientError):
    """The server answered with an error: its status and the contract's error body.

    `errors` holds the field errors of a 400 (`{"loc": [...], "msg": ..., "type": ...}`),
    `retry_after` the seconds of a 429's `Retry-After`. A 5xx without the JSON body (from
    the proxy) has `detail` "HTTP 502 Bad Gateway" and no errors.
    """

    def __init__(self, status: int, detail: str, errors: list | None = None, retry_after: float | None = None):
        super().__init__(f"{detail} (HTTP {status})")
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> "ApiError":
        try:
            body = ErrorOut.model_validate(response.json())
            detail, errors = body.detail, body.errors
        except ValueError:  # not JSON, or not the contract's body (a proxy's error page)
            detail, errors = f"HTTP {response.status_code} {response.reason_phrase}", []
        try:
            retry_after = float(response.headers["Retry-After"])
        except (KeyError, ValueError):
            retry_after = None
        return cls(response.status_code, detail, errors, retry_after)


class SubmittedJob(JobDocument):
    """The job `submit` made, or (`created` False) the one an earlier submission with the same
    Idempotency-Key made. `created` is not part of the job document."""

    created: bool = Field(True, exclude=True)


@dataclass(frozen=True)
class EventHistory:
    """A job's stored events after some seq; `complete` False when history no longer reaches back."""

    events: list[Event]
    complete: bool


class Client:
    """A jobcast server's API, with a token: `Client()` reads the URL and token like the CLI
    (JOBCAST_URL, JOBCAST_TOKEN, then the client config file written by `jobcast token --save`).

    Methods raise `ApiError` when the server refuses and `Unreachable` when it does not
    answer. `watch` is async (an async iterator); the rest are plain calls. Use it as a
    context manager, or call `close()`, to release its connections.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        config = load_client_config() if url is None or token is None else {}
        self.url = (url or config["url"]).rstrip("/")
        self.token = token if token is not None else config["token"]
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, f"/api{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url} ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    @staticmethod
    def _job_path(job_id) -> str:
        return f"/jobs/{quote(str(job_id), safe='')}/"

    def submit(self, kind: str, params: dict[str, Any] | None = None, *,
               idempotency_key: str | None = None) -> SubmittedJob:
        """Submit a job of `kind`; the params are validated by the server (400 `ApiError` with
        field errors at `["body", "params", <field>]`). With `idempotency_key`, submitting again
        returns the first job (`created` False) instead of making another."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        response = self._request("POST", "/jobs/", json={"kind": kind, "params": params or {}}, headers=headers)
        return SubmittedJob.model_validate({**response.json(), "created": response.status_code == 201})

    def get(self, job_id) -> JobDocument:
        """The job's document, live (404 `ApiError` for no such job, or another user's)."""
        return JobDocument.model_validate(self._request("GET", self._job_path(job_id)).json())

    def cancel(self, job_id) -> JobDocument:
        """Cancel a job: a queued one at once, a running one when its worker notices
        (409 `ApiError` when it has already finished)."""
        return JobDocument.model_validate(self._request("POST", self._job_path(job_id) + "cancel/").json())

    def page(self, *, state: State | str | None = None, limit: int = 20, cursor: str | None = None) -> JobPage:
        """One page of my jobs, newest first; pass its `next` as `cursor` for the next page."""
        query = {"limit": limit, **({"state": str(state)} if state else {}), **({"cursor": cursor} if cursor else {})}
        return JobPage.model_validate(self._request("GET", "/jobs/", params=query).json())

    def jobs(self, *, state: State | str | None = None, limit: int | None = None) -> Iterator[JobDocument]:
        """My jobs, newest first, page after page (at most `limit` of them)."""
        cursor, seen = None, 0
        while True:
            size = 100 if limit is None else max(1, min(100, limit - seen))
            page = self.page(state=state, limit=size, cursor=cursor)
            for job in page.items:
                yield job
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if page.next is None:
                return
            cursor = page.next

    def kinds(self) -> list[KindOut]:
        """Every registered kind, with the JSON Schema of its params."""
        return [KindOut.model_validate(kind) for kind in self._request("GET", "/kinds/").json()]

    def events(self, job_id, after: int = 0) -> EventHistory:
        """The job's stored events with seq > `after`, in order."""
        body = self._request("GET", self._job_path(job_id) + "events/", params={"after": after}).json()
        return EventHistory([parse_event(event) for event in body["events"]], body["complete"])

    def ticket(self) -> TicketOut:
        """A single-use WebSocket ticket (for a socket that cannot send the token as a header)."""
        return TicketOut.model_validate(self._request("POST", "/ws-tickets/").json())

    def watch(self, job_id, *, after: int | None = None, on_retry: Callable[[str, float], None] | None = None,
              backoff: Backoff | None = None) -> JobWatch:
        """The job's messages as they happen, an async iterator (`async for message in client.watch(id)`):
        a snapshot (unless `after` is given), then every event once, in order, until the terminal one;
        it reconnects with `after` = the last seq after any drop (docs/clients.md)."""
        return JobWatch(ws_url_for(self.url, str(job_id)), self.token, after=after, on_retry=on_retry, backoff=backoff)

