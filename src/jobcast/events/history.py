"""Reading a job's recent events and live snapshot back from Redis (docs/events.md)."""

from __future__ import annotations

from typing import NamedTuple

import orjson

from jobcast.events.groups import history_key, live_key


class History(NamedTuple):
    events: list[str]  # JSON texts, in seq order, exactly as published
    complete: bool  # False when events after `after` were trimmed (or expired) from history
    last_seq: int  # seq of the last event returned, or `after` when none


def parse_history(after: int, entries, live_seq: int) -> History:
    """Turn XRANGE entries into a History, telling whether anything after `after` is missing."""
    events = [fields[b"e"].decode() for _id, fields in entries]
    first_seq = int(entries[0][0].split(b"-")[0]) if entries else None
    if first_seq is not None:
        complete = first_seq == after + 1
        last = int(entries[-1][0].split(b"-")[0])
    else:
        complete = live_seq <= after
        last = after
    return History(events, complete, last)


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
