"""The WebSocket messages of the contract (section 4), defined once as pydantic models.

The worker builds events from these, the ws tier and the HTTP events endpoint send
them, the CLI and the tests parse them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter


class Progress(BaseModel):
    """A job's progress: `percent` is derived from current and total (null without a total)."""

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
    type: str
    message: str


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    seq: int = 0  # assigned atomically by the publisher; never set by callers
    ts: float


class ProgressEvent(_Event):
    type: Literal["progress"] = "progress"
    current: float | int
    total: float | int | None = None
    percent: float | None = None
    message: str | None = None


class LogEvent(_Event):
    type: Literal["log"] = "log"
    message: str


class StateEvent(_Event):
    type: Literal["state"] = "state"
    state: str
    result: Any = None
    error: JobError | None = None


Event = ProgressEvent | LogEvent | StateEvent
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)


class SnapshotMessage(BaseModel):
    type: Literal["snapshot"] = "snapshot"
    job: dict
    reset: bool = False


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    code: str
    detail: str


ServerMessage = ProgressEvent | LogEvent | StateEvent | SnapshotMessage | ErrorMessage
ServerMessageAdapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


class CancelRequest(BaseModel):
    """The only message a client may send."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["cancel"]
