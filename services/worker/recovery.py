"""Jobs nobody would ever run again, found and queued again by the workers (docs/reliability.md).

Two kinds: queued jobs a Redis restart without persistence took out of the queue, and
running jobs whose worker vanished (its lease lapsed) — the whole host lost, say, whose
Celery message would otherwise come back only after JOBCAST_VISIBILITY_TIMEOUT.

A queued job lives twice: as its row and as a message in Celery's queue in Redis. A Redis
that restarts without persistence comes back empty: the rows stay `queued`, their messages
are gone, and no worker would ever run them. Every worker checks, every
JOBCAST_RECOVERY_CHECK_SECONDS (30 s), whether Redis started after some queued job was created and keeps no
data across restarts (neither AOF nor RDB snapshots); if so, the first worker to claim that
restart queues those jobs again, once. A Redis with persistence kept the messages: nothing
is done then (queuing them again would run them twice).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from celery.signals import worker_ready
from django.utils import timezone

from jobcast.events.groups import reap_claim_key, requeue_claim_key
from jobcast.errors import DEPENDENCY_DOWN
from jobcast.conf import option
from jobcast.jobs.lease import lease_seconds, unheld
from jobcast.jobs.models import Job
from jobcast.jobs.queue import enqueue_job
from jobcast.jobs.states import State
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)


def redis_keeps_data(redis) -> bool:
    """Whether this Redis writes an AOF or RDB snapshots, so its queue survives a restart."""
    appendonly = redis.config_get("appendonly").get("appendonly", "no")
    save = redis.config_get("save").get("save", "")
    return appendonly == "yes" or bool(save.strip())


def requeue_lost_jobs() -> int:
    """Queue again, once per Redis restart, the queued jobs created before Redis last started empty; how many."""
    redis = get_redis()
    server = redis.info("server")
    # Uptime is in whole seconds: a second's margin, so that a job queued just after the
    # restart (its message is there) is never queued twice; one queued in the second before
    # it may stay lost.
    started_at = time.time() - server["uptime_in_seconds"] - 1
    lost = Job.objects.filter(state=State.QUEUED, created_at__lt=datetime.fromtimestamp(started_at, tz=dt_timezone.utc))
    if not lost.exists() or redis_keeps_data(redis):
        return 0
    # One worker per Redis run (its run_id changes at every start; the claim dies with it).
    if not redis.set(requeue_claim_key(server["run_id"]), 1, nx=True):
        return 0
    ids = list(lost.values_list("id", flat=True))
    for job_id in ids:
        enqueue_job(job_id)
    logger.warning("Redis restarted empty at %s: queued %d jobs again whose messages it lost",
                   datetime.fromtimestamp(started_at, tz=dt_timezone.utc).isoformat(), len(ids))
    return len(ids)


def requeue_abandoned_jobs(suspects: set) -> int:
    """Queue again the running jobs nobody has held for two checks in a row; how many.

    `suspects` carries the unheld ones of the previous check: a lease that a Redis restart
    emptied is written again by its attempt within a third of its life, so one miss is not
    enough. When the job is delivered, `job_start` runs it again (attempts + 1) or fails it
    (`WorkerLost`), as for any job whose worker was lost.
    """
    life = lease_seconds()
    cutoff = timezone.now() - timedelta(seconds=2 * life)
    running = list(Job.objects.filter(state=State.RUNNING, started_at__lt=cutoff).values_list("id", flat=True)[:1000])
    abandoned = set(unheld(running)) if running else set()
    again, suspects_now = abandoned & suspects, abandoned
    suspects.clear()
    suspects.update(suspects_now - again)
    redis, queued = get_redis(), 0
    for job_id in again:
        # One worker queues it (the claim outlives a delivery's wait for the lease).
        if redis.set(reap_claim_key(job_id), 1, nx=True, px=int(4 * life * 1000)):
            enqueue_job(job_id)
            queued += 1
    if queued:
        logger.warning("queued %d running jobs again whose worker vanished (no lease for two checks)", queued)
    return queued


def recover_forever() -> None:
    """Check every JOBCAST_RECOVERY_CHECK_SECONDS for the life of the worker (a daemon thread)."""
    suspects: set = set()
    while True:
        time.sleep(option("RECOVERY_CHECK_SECONDS"))
        try:
            requeue_lost_jobs()
            requeue_abandoned_jobs(suspects)
        except DEPENDENCY_DOWN:
            pass  # Redis or the database is still away: the next round sees what happened
        except Exception:  # noqa: BLE001 - the worker must keep running jobs
            logger.warning("checking for lost or abandoned jobs failed", exc_info=True)


@worker_ready.connect
def _start_recovery_checks(**kwargs):
    threading.Thread(target=recover_forever, name="recover-jobs", daemon=True).start()
