"""`maintenance.prune_jobs`: deletes the submitter's own finished jobs older than N days.

Real work a user runs to keep their job list short; it reports progress per batch
and honours cancellation between batches. `dry_run` only counts.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from pydantic import BaseModel, Field

from jobcast.jobs.registry import job

BATCH = 200


class PruneParams(BaseModel):
    older_than_days: float = Field(30, ge=0, le=36500, description="Delete finished jobs older than this.")
    dry_run: bool = Field(False, description="Only count what would be deleted.")


@job("maintenance.prune_jobs", params=PruneParams, title="Delete my old finished jobs")
def prune_jobs(ctx, params: PruneParams):
    """Delete (or count) the owner's finished jobs created before the cut-off, in batches."""
    from jobcast.jobs.models import Job
    from jobcast.jobs.states import TERMINAL

    cutoff = timezone.now() - timedelta(days=params.older_than_days)
    candidates = Job.objects.filter(
        owner_id=ctx.owner_id, state__in=[str(s) for s in TERMINAL], created_at__lt=cutoff
    ).exclude(id=ctx.job_id)
    total = candidates.count()
    ctx.progress(0, total=total, message=f"{total} finished jobs before {cutoff:%Y-%m-%d %H:%M} UTC")
    if params.dry_run:
        return {"matched": total, "deleted": 0, "dry_run": True}
    deleted = 0
    while True:
        ids = list(candidates.values_list("id", flat=True)[:BATCH])
        if not ids:
            break
        deleted += Job.objects.filter(id__in=ids).delete()[0]
        ctx.progress(deleted, total=max(total, deleted), message=f"deleted {deleted}")
    ctx.log(f"deleted {deleted} jobs")
    return {"matched": total, "deleted": deleted, "dry_run": False}
