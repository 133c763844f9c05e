"""Reading jobs for a user (HackSoft-style selectors): another user's job is None, hence 404."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from jobcast.errors import ApiError
from jobcast.jobs.models import Job
from jobcast.jobs.states import State

MAX_PAGE = 100


def job_get_for_user(user, job_id) -> Job | None:
    """The user's job with this id, or None (also for a malformed id or another user's job)."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        return None
    return Job.objects.filter(id=job_uuid, owner_id=user.id).first()


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:  # this API's cursors are aware; a naive one is forged
            raise ValueError("naive datetime")
        return created_at, uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Invalid cursor.", [{"loc": ["query", "cursor"], "msg": "not a cursor from this API"}])


def job_list_for_user(user, *, state: str | None = None, limit: int = 20, cursor: str | None = None):
    """A page of the user's jobs, newest first; returns (jobs, next_cursor)."""
    if state is not None and state not in {s.value for s in State}:
        raise ApiError(400, "Invalid state.", [{"loc": ["query", "state"], "msg": f"must be one of {[s.value for s in State]}"}])
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "Invalid limit.", [{"loc": ["query", "limit"], "msg": f"must be between 1 and {MAX_PAGE}"}])
    jobs = Job.objects.filter(owner_id=user.id).order_by("-created_at", "-id")
    if state:
        jobs = jobs.filter(state=state)
    if cursor:
        created, job_id = _decode_cursor(cursor)
        jobs = jobs.filter(created_at__lte=created).exclude(created_at=created, id__gte=job_id)
    page = list(jobs[: limit + 1])
    next_cursor = _encode_cursor(page[limit - 1]) if len(page) > limit else None
    return page[:limit], next_cursor


def jobs_active_for_user(user_id) -> list[Job]:
    """The user's queued and running jobs (for the all-jobs stream's opening snapshots)."""
    return list(Job.objects.filter(owner_id=user_id, state__in=[State.QUEUED, State.RUNNING]).order_by("created_at"))


# The staff stream's opening snapshots and the all-jobs page show at most this many active jobs.
ALL_ACTIVE_LIMIT = 500


def jobs_active_all(limit: int = ALL_ACTIVE_LIMIT) -> list[Job]:
    """Every user's queued and running jobs, oldest first, owners loaded (for staff views only)."""
    return list(Job.objects.filter(state__in=[State.QUEUED, State.RUNNING])
                .select_related("owner").order_by("created_at", "id")[:limit])
