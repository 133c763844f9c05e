"""Request and response shapes of the HTTP API (they make the OpenAPI document at /api/schema/).

The job itself is jobcast.events.schema.JobDocument, the same model the WebSocket snapshot carries.
"""

from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import ConfigDict, Field

from jobcast.events.schema import JobDocument


class SubmitIn(Schema):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(..., min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class JobPage(Schema):
    items: list[JobDocument]
    next: str | None


class EventsOut(Schema):
    events: list[dict[str, Any]]
    complete: bool


class KindOut(Schema):
    name: str
    title: str
    params_schema: dict[str, Any]


class TicketOut(Schema):
    ticket: str
    expires_in: int


class ErrorOut(Schema):
    detail: str
    errors: list[Any] = []
