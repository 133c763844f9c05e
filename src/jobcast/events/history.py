"""Reading a job's recent events and live snapshot back from Redis (docs/events.md).

Each history entry is stored by the publisher (publish.lua) with its JSON text exactly as
sent on the socket (`e`), its type (`k`) and, on the job's last event, a terminal mark
(`x`), so a replay sends the stored text as it is, without decoding it.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from jobcast.events.groups import history_key, live_key
from jobcast.jobs.states import is_terminal


class StoredEvent(NamedTuple):
    seq: int
    type: str  # progress, log or state
    text: str  # the event's JSON, as sent on the socket
    terminal: bool  # the job's last event


class History(NamedTuple):
    events: list[StoredEvent]  # in seq order
    complete: bool  # False when events after `after` were trimmed (or expired) from history
    last_seq: int  # seq of the last event returned, or `after` when none


def _stored_event(entry_id: bytes, fields: dict) -> StoredEvent:
    text = fields[b"e"].decode()
    if b"k" in fields:
        return StoredEvent(int(entry_id.split(b"-")[0]), fields[b"k"].decode(), text, b"x" in fields)
    # Written before entries carried their type (a rolling upgrade): read it from the JSON.
    event = orjson.loads(text)
    terminal = event["type"] == "state" and is_terminal(event["state"])
    return StoredEvent(event["seq"], event["type"], text, terminal)


def parse_history(after: int, entries, live_seq: int) -> History:
    """Turn XRANGE entries into a History, telling whether anything after `after` is missing."""
    events = [_stored_event(entry_id, fields) for entry_id, fields in entries]
    if events:
        return History(events, events[0].seq == after + 1, events[-1].seq)
    return History(events, live_seq <= after, after)


def read_history(redis, job_id, after: int, known_seq: int = 0) -> History:
    """The stored events of a job with seq > after (sync client).

    `known_seq` is the seq the database row has, so history that expired as a whole
    still reads as incomplete.
    """
    pipe = redis.pipeline(transaction=True)
    pipe.xrange(history_key(job_id), min=str(after + 1), max="+")
    pipe.hget(live_key(job_id), "seq")
    entries, live_seq = pipe.execute()
    return parse_history(after, entries, max(int(live_seq or 0), known_seq))


async def read_history_async(redis, job_id, after: int, known_seq: int = 0) -> History:
    """The stored events of a job with seq > after (asyncio client)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xrange(history_key(job_id), min=str(after + 1), max="+")
        pipe.hget(live_key(job_id), "seq")
        entries, live_seq = await pipe.execute()
    return parse_history(after, entries, max(int(live_seq or 0), known_seq))


class LiveState(NamedTuple):
    seq: int
    progress: dict | None  # latest progress event
    state: dict | None  # latest state event


def parse_live(raw: dict) -> LiveState | None:
    """Decode the live-snapshot hash (None when Redis holds nothing for the job)."""
    if not raw or b"seq" not in raw:
        return None
    progress = orjson.loads(raw[b"progress"]) if b"progress" in raw else None
    state = orjson.loads(raw[b"state"]) if b"state" in raw else None
    return LiveState(int(raw[b"seq"]), progress, state)


def read_live(redis, job_ids) -> list[LiveState | None]:
    """Live snapshots of several jobs in one round trip (sync client)."""
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(live_key(job_id))
    return [parse_live(raw) for raw in pipe.execute()]


async def read_live_async(redis, job_id) -> LiveState | None:
    """Live snapshot of one job (asyncio client)."""
    return parse_live(await redis.hgetall(live_key(job_id)))
