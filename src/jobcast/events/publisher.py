"""The one event publisher (docs/events.md).

`JobPublisher` is a job's publish handle: it owns the job's seq floor and publishes its
events. Each publish assigns the events' seqs, appends them to the job's history, updates
the live snapshot and sends them to the job's and owner's groups, in one Redis round trip
on the process's persistent connection: no event loop, no new connection, one JSON encode
per event. The groups are the job's, its owner's and the staff stream's (`jobs.all`). It is not for use inside a database transaction (a rolled-back change would
have been announced): the lifecycle services publish after their row writes commit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import redis.exceptions
from redis.commands.core import Script

from jobcast.conf import option
from jobcast.events.groups import ALL_JOBS_GROUP, LAYER_PREFIX, history_key, job_group, live_key, seq_key, user_group
from jobcast.events.schema import Event, JobDocument, ProgressEvent, SnapshotMessage, StaffSnapshotMessage, StateEvent
from jobcast.metrics import PUBLISHED_BY_TYPE, events_published, publish_duration
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)

# A running job's keys live this long after its latest event, so a job whose worker
# vanished for good cannot leak its history forever.
LIVE_KEY_TTL = 7 * 86400
PUBLISH_LUA = (Path(__file__).with_name("publish.lua")).read_text()


# What an unreachable, restarting or failing-over Redis raises (redis-py): worth waiting out.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
              redis.exceptions.ReadOnlyError)


class RedisUnavailable(Exception):
    """Redis stayed unreachable longer than JOBCAST_REDIS_RETRY_SECONDS: an infrastructure outage, not the job's fault."""


class Published(NamedTuple):
    seq: int
    receivers: int  # ws processes that had a socket in one of the groups (a process counts once per group)


def _group_channel(group: str) -> str:
    """The pub/sub channel of a group, as RedisPubSubChannelLayer names it."""
    return f"{LAYER_PREFIX}__group__{group}"


def _run_script(job_id, groups: list[str], entries: Sequence[tuple[str, str, float, bool]], ttl: int,
                seq_floor: int, repeat: bool = False) -> Published:
    """Run publish.lua for (type, JSON without seq, ts, terminal) entries of one job, sent to `groups`."""
    args = [option("HISTORY_MAXLEN"), ttl, str(job_id), int(seq_floor), "1" if repeat else "0", len(groups)]
    args += [_group_channel(group) for group in groups]
    for event_type, text, ts, terminal in entries:
        args += [event_type, text, repr(ts), "1" if terminal else "0"]
    result = _publish_script()(keys=[seq_key(job_id), history_key(job_id), live_key(job_id)], args=args)
    return Published(*(int(x) for x in result))


_scripts: dict[str, Script] = {}


def _publish_script() -> Script:
    """publish.lua on this process's Redis client (EVALSHA; redis-py loads it again after a restart)."""
    script = _scripts.get(option("REDIS_URL"))
    if script is None:
        script = _scripts[option("REDIS_URL")] = get_redis().register_script(PUBLISH_LUA)
    return script


class JobPublisher:
    """One job's publish handle: publishes its events in order and owns its seq floor.

    `seq` is the highest seq this handle knows the job reached (the row's at first, then
    each publish's last): if Redis lost the job's counter, numbering resumes above it, so a
    seq is never given to two events. `after_publish` is called after each publish (the
    lifecycle uses it to copy progress and seq to the job row now and then).
    """

    def __init__(self, job_id, owner_id, *, seq: int = 0, after_publish: Callable[["JobPublisher"], None] | None = None):
        self.job_id = str(job_id)
        self.owner_id = owner_id
        self.seq = seq
        self.latest_progress: ProgressEvent | None = None  # the last progress event published
        self._groups = [job_group(self.job_id), user_group(owner_id), ALL_JOBS_GROUP]
        self._after_publish = after_publish

    def publish(self, events: Sequence[Event]) -> Published:
        """Publish events of this job, in order, in one round trip; returns the last seq given."""
        entries = []
        terminal = False
        for event in events:
            is_last = isinstance(event, StateEvent) and event.terminal
            terminal = terminal or is_last
            entries.append((event.type, event.model_dump_json(exclude={"seq"}), event.ts, is_last))
            if isinstance(event, ProgressEvent):
                self.latest_progress = event
        # A finished job's keys expire JOBCAST_HISTORY_TTL after its terminal event.
        ttl = option("HISTORY_TTL") if terminal else max(LIVE_KEY_TTL, option("HISTORY_TTL"))
        started = time.perf_counter()
        published = self._run_holding_on(entries, ttl)
        publish_duration.observe(time.perf_counter() - started)
        self.seq = published.seq
        # One increment per type and publish (a batch of 500 progress events is one inc(500)).
        counts = {entries[0][0]: 1} if len(entries) == 1 else Counter(entry[0] for entry in entries)
        for event_type, count in counts.items():
            (PUBLISHED_BY_TYPE.get(event_type) or events_published.labels(event_type)).inc(count)
        if self._after_publish is not None:
            self._after_publish(self)
        return published

    def _run_holding_on(self, entries, ttl: int) -> Published:
        """Run the script; while Redis is away, wait and try again for JOBCAST_REDIS_RETRY_SECONDS.

        The job's code waits inside ctx.progress meanwhile, so an outage costs time, not events.
        A repeat is marked, so a publish that ran but whose reply was lost is not run twice.
        """
        deadline, delay, repeat = None, 0.1, False
        while True:
            try:
                return _run_script(self.job_id, self._groups, entries, ttl, self.seq, repeat)
            except REDIS_DOWN as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + option("REDIS_RETRY_SECONDS")
                    logger.warning("job %s: Redis unreachable (%s); holding its events until it is back",
                                   self.job_id, type(exc).__name__)
                if now >= deadline:
                    raise RedisUnavailable(
                        f"Redis was unreachable for {option('REDIS_RETRY_SECONDS'):g} s ({type(exc).__name__})"
                    ) from exc
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay, repeat = min(delay * 2, 2.0), True

    def publish_one(self, event: Event) -> Published:
        """Publish one event (publish() of one)."""
        return self.publish([event])


def notify_new_job(owner_id, owner_name: str, document: JobDocument) -> None:
    """Show a job that has no event yet (just queued) on its owner's all-jobs streams and the staff stream.

    The snapshot goes to the owner's group and, with the owner's username, to `jobs.all`
    (not to the job's group, whose sockets read their own snapshot); it takes no seq.
    """
    for group, message in ((user_group(owner_id), SnapshotMessage(job=document)),
                           (ALL_JOBS_GROUP, StaffSnapshotMessage(job=document, owner=owner_name))):
        _run_script(document.id, [group], [("snapshot", message.model_dump_json(), 0.0, False)], 0, 0)
