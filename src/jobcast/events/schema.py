"""The wire format, typed once (docs/protocol.md): the job document, every WebSocket message and HTTP answer.

The REST responses, the snapshot message and the stored history all use these models: the
worker builds events from them, the web and ws tiers send them, clients (jobcast.client)
parse them.
`JobDocument.apply` is how a client folds events into the document it holds, so "a
snapshot at seq N plus the events after N" gives the same document as a fresh snapshot —
all but `attempts`, which no event of the contract carries
(tests/integration/test_resume_property.py holds that).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import IntEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from jobcast.jobs.states import State, is_terminal


def iso_utc(value: datetime | None) -> str | None:
    """A datetime as the contract writes it: ISO 8601 in UTC with a `Z`."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def iso_from_ts(ts: float | None) -> str | None:
    """An event's `ts` (Unix seconds) as the contract writes a datetime."""
    return iso_utc(datetime.fromtimestamp(ts, tz=timezone.utc)) if ts else None


class Progress(BaseModel):
    """A job's progress: `percent` is derived from current and total (null without a total)."""

    model_config = ConfigDict(extra="forbid")

    current: float | int = 0
    total: float | int | None = None
    percent: float | None = None
    message: str | None = None

    @classmethod
    def of(cls, current: float | int, total: float | int | None = None, message: str | None = None) -> "Progress":
        """Progress with its percent computed (clamped to 0..100)."""
        percent = None
        if total:
            percent = round(max(0.0, min(100.0, 100.0 * current / total)), 2)
        return cls(current=current, total=total, percent=percent, message=message)


class JobError(BaseModel):
    """Why a job failed: the exception's type name and message (never a traceback)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    message: str


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    seq: int = 0  # assigned atomically by the publisher; never set by callers
    ts: float


class ProgressEvent(_Event):
    """The job's latest progress."""

    type: Literal["progress"] = "progress"
    current: float | int
    total: float | int | None = None
    percent: float | None = None
    message: str | None = None

    def progress(self) -> Progress:
        """The progress this event reports."""
        return Progress(current=self.current, total=self.total, percent=self.percent, message=self.message)


class LogEvent(_Event):
    """A line the job logged for its watchers."""

    type: Literal["log"] = "log"
    message: str


class StateEvent(_Event):
    """A state change; the terminal one is the job's last event."""

    type: Literal["state"] = "state"
    state: State
    result: Any = None
    error: JobError | None = None

    @property
    def terminal(self) -> bool:
        """Whether this is the job's last event."""
        return is_terminal(self.state)


Event = ProgressEvent | LogEvent | StateEvent
_EVENT: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="type")])


def parse_event(data: str | bytes | dict) -> Event:
    """An event from its JSON (as sent on the socket or stored in history), or from that JSON parsed."""
    return _EVENT.validate_python(data) if isinstance(data, dict) else _EVENT.validate_json(data)


class JobDocument(BaseModel):
    """The contract's job object: what REST answers, what a snapshot carries."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    params: dict[str, Any]
    state: State
    progress: Progress
    seq: int
    result: Any = None
    error: JobError | None = None
    attempts: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None

    def apply(self, event: Event) -> "JobDocument":
        """This document with `event` folded in (a client's view after receiving it)."""
        changes: dict[str, Any] = {"seq": event.seq}
        if isinstance(event, ProgressEvent):
            changes["progress"] = event.progress()
        elif isinstance(event, StateEvent):
            changes.update(state=event.state, result=event.result, error=event.error)
            if event.state == State.RUNNING:
                changes["started_at"] = self.started_at or iso_from_ts(event.ts)
            elif event.terminal:
                changes["finished_at"] = iso_from_ts(event.ts)
        return self.model_copy(update=changes)


class SnapshotMessage(BaseModel):
    """A job's whole current state; `reset` says the client's earlier state must be dropped."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["snapshot"] = "snapshot"
    job: JobDocument
    reset: bool = False


class ErrorMessage(BaseModel):
    """The client sent something unusable."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["error"] = "error"
    code: str
    detail: str


class StaffSnapshotMessage(SnapshotMessage):
    """A snapshot on the staff stream (`/ws/jobs/?all=1`): the job and its owner's username."""

    owner: str


class CancelRequest(BaseModel):
    """The only message a client may send."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["cancel"]


class StreamTokenClaims(BaseModel):
    """The claims of a product-signed stream token (a JWT, docs/protocol.md): whom it is for, until
    when, for which audience, and optionally which jobs (or kinds of jobs) it may watch."""

    sub: str = Field(min_length=1, max_length=255)  # the product's id of its user
    exp: int  # Unix time after which the token opens nothing
    aud: str | list[str]  # must name JOBCAST_JWT_AUDIENCE
    iat: int | None = None
    iss: str | None = None  # checked when JOBCAST_JWT_ISSUER is set
    jobs: list[UUID] | None = None  # only these jobs' streams (/ws/jobs/{id}/)
    kinds: list[str] | None = None  # only streams of jobs of these kinds

    @property
    def scoped(self) -> bool:
        """Whether the token names the jobs or kinds it may watch (then /ws/jobs/ is not one of them)."""
        return self.jobs is not None or self.kinds is not None

    def allows(self, job) -> bool:
        """Whether this token may watch `job` (which must also be its user's)."""
        return ((self.jobs is None or job.id in self.jobs)
                and (self.kinds is None or job.kind in self.kinds))


class CloseCode(IntEnum):
    """Every code the ws tier closes a socket with, and what it tells the client (docs/protocol.md)."""

    JOB_FINISHED = 1000  # the terminal event was sent: stop
    POLICY_VIOLATION = 1008  # a bad `after`, or too many unusable messages: stop
    MESSAGE_TOO_BIG = 1009  # a frame over 64 KiB: stop
    SERVER_RESTARTING = 1012  # a drain: reconnect with `after` = the last seq seen
    OVERLOADED = 1013  # this ws process is full: reconnect later, with backoff
    NOT_AUTHENTICATED = 4401  # no valid credentials: stop
    NOT_FOUND = 4404  # no such job, not yours, or not one the stream token allows: stop
    FORBIDDEN = 4403  # the stream is for staff users only, or not for a token scoped to jobs or kinds: stop
    TOO_SLOW = 4408  # the reader fell too far behind: reconnect with `after`
    TOO_MANY_CONNECTIONS = 4429  # this user has too many sockets here: reconnect later, with backoff


# -- HTTP answers (the API's OpenAPI document at /api/schema/ is made from these) ------------


class JobPage(BaseModel):
    """A page of `GET /api/jobs/`, newest first; `next` is the cursor of the next page."""

    items: list[JobDocument]
    next: str | None


class EventsOut(BaseModel):
    """`GET /api/jobs/{id}/events/`: stored events as sent on the sockets (parse_event reads each)."""

    events: list[dict[str, Any]]
    complete: bool


class KindOut(BaseModel):
    """A registered kind: its name, a human title and the JSON Schema of its params."""

    name: str
    title: str
    params_schema: dict[str, Any]


class TicketOut(BaseModel):
    """A single-use WebSocket ticket, valid `expires_in` seconds."""

    ticket: str
    expires_in: int


class ErrorOut(BaseModel):
    """Every HTTP error's body: `errors` lists field errors ({loc, msg, type}) on a 400."""

    detail: str
    errors: list[Any] = []
