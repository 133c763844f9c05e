"""Channel-layer group names and Redis keys: every name jobcast gives a group or a key, built in one place."""

from __future__ import annotations


def job_group(job_id) -> str:
    """The group of sockets watching one job."""
    return f"job.{job_id}"


def user_group(user_id) -> str:
    """The group of a user's all-jobs streams."""
    return f"user.{user_id}"


ALL_JOBS_GROUP = "jobs.all"

# The channel layer's prefix: a group's Redis pub/sub channel is f"{LAYER_PREFIX}__group__{group}",
# as channels-redis's pub/sub layer names it (jobcast.ws.layer uses this prefix, the publisher too).
LAYER_PREFIX = "asgi"
# The alias of jobcast's layer in CHANNEL_LAYERS: its own, so a product's Channels layer ("default")
# is left alone (docs/integration.md).
LAYER_ALIAS = "jobcast"
"""The group of the staff stream (`/ws/jobs/?all=1`): every job's events and new-job snapshots."""


def seq_key(job_id) -> str:
    """Counter holding the job's latest seq."""
    return f"jobcast:job:{job_id}:seq"


def history_key(job_id) -> str:
    """Stream of the job's recent events; entry id is `<seq>-0`."""
    return f"jobcast:job:{job_id}:events"


def live_key(job_id) -> str:
    """Hash with the job's latest seq, progress event and state event (the live snapshot)."""
    return f"jobcast:job:{job_id}:live"


def cancel_key(job_id) -> str:
    """Flag set when a cancellation of a running job was requested."""
    return f"jobcast:job:{job_id}:cancel"


def submit_rate_key(user_id, minute: int) -> str:
    """Counter of a user's submissions in one calendar minute (JOBCAST_SUBMIT_RATE_PER_MINUTE)."""
    return f"jobcast:rate:submit:{user_id}:{minute}"


def ticket_key(ticket_hash: str) -> str:
    """A WebSocket ticket, by the hash of its value, holding its user's id until redeemed or expired."""
    return f"jobcast:ticket:{ticket_hash}"


def requeue_claim_key(redis_run_id: str) -> str:
    """Claimed by the one worker that queues again the jobs lost when this Redis run started empty."""
    return f"jobcast:requeue:{redis_run_id}"


def lease_key(job_id) -> str:
    """Held by the attempt running the job, renewed while it runs (jobcast.jobs.lease)."""
    return f"jobcast:job:{job_id}:lease"


def reap_claim_key(job_id) -> str:
    """Claimed by the one worker that queues a job again whose worker vanished."""
    return f"jobcast:job:{job_id}:reaped"
