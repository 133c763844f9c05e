"""Request shapes of the HTTP API; the answers are typed once in jobcast.events.schema
(JobDocument, JobPage, EventsOut, KindOut, TicketOut, ErrorOut), which clients share."""

from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import ConfigDict, Field


class SubmitIn(Schema):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(..., min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
