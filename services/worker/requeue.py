"""Queue again the jobs a Redis restart without persistence took out of the queue (docs/reliability.md).

A queued job lives twice: as its row and as a message in Celery's queue in Redis. A Redis
that restarts without persistence comes back empty: the rows stay `queued`, their messages
are gone, and no worker would ever run them. Every worker checks, every
REQUEUE_CHECK_SECONDS, whether Redis started after some queued job was created and keeps no
data across restarts (neither AOF nor RDB snapshots); if so, the first worker to claim that
restart queues those jobs again, once. A Redis with persistence kept the messages: nothing
is done then (queuing them again would run them twice).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from celery.signals import worker_ready

from jobcast.events.groups import requeue_claim_key
from jobcast.events.publisher import REDIS_DOWN
from jobcast.jobs.models import Job
from jobcast.jobs.queue import enqueue_job
from jobcast.jobs.states import State
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)

REQUEUE_CHECK_SECONDS = 30.0


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
    lost = Job.objects.filter(state=State.QUEUED, created_at__lt=datetime.fromtimestamp(started_at, tz=timezone.utc))
    if not lost.exists() or redis_keeps_data(redis):
        return 0
    # One worker per Redis run (its run_id changes at every start; the claim dies with it).
    if not redis.set(requeue_claim_key(server["run_id"]), 1, nx=True):
        return 0
    ids = list(lost.values_list("id", flat=True))
    for job_id in ids:
        enqueue_job(job_id)
    logger.warning("Redis restarted empty at %s: queued %d jobs again whose messages it lost",
                   datetime.fromtimestamp(started_at, tz=timezone.utc).isoformat(), len(ids))
    return len(ids)


def requeue_forever() -> None:
    """Check every REQUEUE_CHECK_SECONDS for the life of the worker (a daemon thread)."""
    while True:
        time.sleep(REQUEUE_CHECK_SECONDS)
        try:
            requeue_lost_jobs()
        except REDIS_DOWN:
            pass  # still away: the next round sees the restart
        except Exception:  # noqa: BLE001 - the worker must keep running jobs
            logger.warning("checking for jobs lost by a Redis restart failed", exc_info=True)


@worker_ready.connect
def _start_requeue_checks(**kwargs):
    threading.Thread(target=requeue_forever, name="requeue-lost-jobs", daemon=True).start()
