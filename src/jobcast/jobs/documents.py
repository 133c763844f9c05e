"""The contract's job object built from the database row overlaid with the live state kept in Redis."""

from __future__ import annotations

from jobcast.events.history import LiveState, read_live
from jobcast.events.schema import JobDocument, Progress, iso_from_ts, iso_utc
from jobcast.jobs.models import Job
from jobcast.jobs.states import State, is_terminal
from jobcast.redis_client import get_redis


def job_document(job: Job, live: LiveState | None = None) -> JobDocument:
    """The job as the contract shows it, consistent with its `seq` (live state from Redis wins)."""
    doc = JobDocument(
        id=str(job.id),
        kind=job.kind,
        params=job.params,
        state=job.state,
        progress=Progress.model_validate(job.progress or {}),
        seq=job.seq,
        result=job.result,
        error=job.error,
        attempts=job.attempts,
        created_at=iso_utc(job.created_at),
        started_at=iso_utc(job.started_at),
        finished_at=iso_utc(job.finished_at),
    )
    if live is None or live.seq < job.seq:
        return doc
    # Redis holds the job's newest events; the row may lag (it is written at most every few
    # seconds), so everything that events change is taken from the same seq.
    changes: dict = {"seq": live.seq}
    if live.progress:
        changes["progress"] = Progress.model_validate({k: live.progress.get(k) for k in Progress.model_fields})
    if live.state:
        state = live.state["state"]
        changes.update(state=state, result=live.state.get("result"), error=live.state.get("error"))
        if state == State.RUNNING:
            changes.update(started_at=doc.started_at or iso_from_ts(live.state.get("ts")), finished_at=None)
        elif is_terminal(state):
            changes["finished_at"] = doc.finished_at or iso_from_ts(live.state.get("ts"))
    return JobDocument.model_validate({**doc.model_dump(), **changes})


def job_documents(jobs: list[Job]) -> list[JobDocument]:
    """Documents for several jobs, reading their live state in one Redis round trip."""
    if not jobs:
        return []
    lives = read_live(get_redis(), [job.id for job in jobs])
    return [job_document(job, live) for job, live in zip(jobs, lives)]
