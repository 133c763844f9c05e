"""The contract's job object: the database row overlaid with the live state kept in Redis."""

from __future__ import annotations

from datetime import datetime, timezone

from jobcast.events.history import LiveState, read_live
from jobcast.events.schema import Progress
from jobcast.jobs.models import Job
from jobcast.redis_client import get_redis


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _iso_ts(ts: float | None) -> str | None:
    return _iso(datetime.fromtimestamp(ts, tz=timezone.utc)) if ts else None


def job_document(job: Job, live: LiveState | None = None) -> dict:
    """The job as the contract shows it, consistent with its `seq` (live state from Redis wins)."""
    doc = {
        "id": str(job.id),
        "kind": job.kind,
        "params": job.params,
        "state": job.state,
        "progress": Progress.model_validate(job.progress or {}).model_dump(),
        "seq": job.seq,
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
    if live is not None and live.seq >= job.seq:
        # Redis holds the job's newest events; the row may lag (it is written at most every
        # few seconds), so everything that events change is taken from the same seq.
        doc["seq"] = live.seq
        if live.progress:
            doc["progress"] = Progress.model_validate(live.progress).model_dump()
        if live.state:
            doc["state"] = live.state["state"]
            doc["result"] = live.state.get("result")
            doc["error"] = live.state.get("error")
            if live.state["state"] == "running":
                doc["started_at"] = doc["started_at"] or _iso_ts(live.state.get("ts"))
                doc["finished_at"] = None
            elif live.state["state"] in ("succeeded", "failed", "cancelled"):
                doc["finished_at"] = doc["finished_at"] or _iso_ts(live.state.get("ts"))
    return doc


def job_documents(jobs: list[Job]) -> list[dict]:
    """Documents for several jobs, reading their live state in one Redis round trip."""
    if not jobs:
        return []
    lives = read_live(get_redis(), [job.id for job in jobs])
    return [job_document(job, live) for job, live in zip(jobs, lives)]
