"""The one event publisher (docs/events.md).

`publish_events` assigns each event's seq, appends it to the job's history, updates the
live snapshot and sends the events to the job's and owner's groups, in one Redis round
trip on the process's persistent connection: no event loop, no new connection, one JSON
encode per event. `publish_event` is the same for one event; callers inside a database
transaction use `publish_event_on_commit`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

from django.conf import settings
from django.db import transaction

from jobcast.events.groups import history_key, job_group, live_key, seq_key, user_group
from jobcast.events.schema import Event, SnapshotMessage
from jobcast.metrics import events_published
from jobcast.redis_client import get_redis

# A running job's keys live this long after its latest event, so a job whose worker
# vanished for good cannot leak its history forever.
LIVE_KEY_TTL = 7 * 86400


class Published(NamedTuple):
    seq: int
    receivers: int  # ws processes that had a socket in the job's or the owner's group


@lru_cache(maxsize=1)
def _publish_script():
    source = (Path(__file__).with_name("publish.lua")).read_text()
    return get_redis().register_script(source)


def _group_channel(group: str) -> str:
    """The pub/sub channel of a group, as RedisPubSubChannelLayer names it."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "asgi")
    return f"{prefix}__group__{group}"


def _run_script(job_id, owner_id, events: Sequence[tuple[str, str, float]], ttl: int, seq_floor: int = 0) -> Published:
    """Run publish.lua for (type, JSON without seq, ts) triples of one job."""
    snapshot = events[0][0] == "snapshot"
    groups = [user_group(owner_id)] if snapshot else [job_group(job_id), user_group(owner_id)]
    args = [settings.JOBCAST["HISTORY_MAXLEN"], ttl, str(job_id), int(seq_floor), len(groups)]
    args += [_group_channel(group) for group in groups]
    for event_type, text, ts in events:
        args += [event_type, text, repr(ts)]
    result = _publish_script()(keys=[seq_key(job_id), history_key(job_id), live_key(job_id)], args=args)
    return Published(*(int(x) for x in result))


def publish_events(events: Sequence[Event], owner_id, *, terminal: bool = False, seq_floor: int = 0) -> Published:
    """Publish events of one job, in order, in one round trip; returns the last seq given.

    Not for use inside a transaction. `seq_floor` is the highest seq the caller knows the
    job reached (the row's `seq`, or the running job's last one): if Redis lost the
    counter, numbering resumes above it. `terminal` marks the job's last publish (its keys
    then expire after JOBCAST_HISTORY_TTL).
    """
    ttl = settings.JOBCAST["HISTORY_TTL"] if terminal else max(LIVE_KEY_TTL, settings.JOBCAST["HISTORY_TTL"])
    triples = [(event.type, event.model_dump_json(exclude={"seq"}), event.ts) for event in events]
    published = _run_script(events[0].job_id, owner_id, triples, ttl, seq_floor)
    for event in events:
        events_published.labels(event.type).inc()
    return published


def publish_event(event: Event, owner_id, *, terminal: bool = False, seq_floor: int = 0) -> Published:
    """Publish one event of a job (publish_events of one); returns the seq it was given."""
    return publish_events([event], owner_id, terminal=terminal, seq_floor=seq_floor)


def publish_event_on_commit(event: Event, owner_id, *, terminal: bool = False, seq_floor: int = 0) -> None:
    """Publish once the surrounding transaction commits (immediately outside one)."""
    transaction.on_commit(lambda: publish_event(event, owner_id, terminal=terminal, seq_floor=seq_floor))


def notify_user_snapshot(owner_id, job_document: dict) -> None:
    """Show the owner's all-jobs streams a job that has no event yet (e.g. just queued).

    The snapshot goes to the owner's group only (the job's group joins later) and takes no seq.
    """
    text = SnapshotMessage(job=job_document).model_dump_json()
    _run_script(job_document["id"], owner_id, [("snapshot", text, 0.0)], 0)
