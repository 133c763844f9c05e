"""The safety net under pub/sub delivery: sockets that fell behind and heard nothing since catch up.

Redis pub/sub does not keep messages: one published while a ws process's connection was
down (it reconnects and subscribes again by itself), or in the instant between a socket's
SUBSCRIBE and its history read, reaches none of that process's sockets. The next live
event shows the gap and the socket repairs it from history; but when nothing follows (the
lost event was the job's last) the socket would wait forever. So every
JOBCAST_WS_RESYNC_SECONDS one task per ws process reads the latest seq of the jobs its
sockets watch (one pipelined round trip) and nudges each socket that is behind it and has
not moved since the previous round; the socket then catches up from history
(docs/events.md). A socket that is receiving never gets nudged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from jobcast.conf import option
from jobcast.events.groups import live_key
from jobcast.events.publisher import REDIS_DOWN
from jobcast.events.schema import CloseCode
from jobcast.redis_client import get_async_redis
from jobcast.ws.auth import revoked
from jobcast.ws.limits import connections

logger = logging.getLogger(__name__)

_sweepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


async def latest_seqs(job_ids: list[str]) -> dict[str, int]:
    """The latest published seq of each job (0 when Redis has none)."""
    async with get_async_redis().pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(live_key(job_id), "seq")
        values = await pipe.execute()
    return {job_id: int(value or 0) for job_id, value in zip(job_ids, values)}


async def sweep_once(layer, seen: dict) -> int:
    """One round: nudge the sockets that are behind and stood still since the last round."""
    # Only sockets past their ownership check (a refused one is counted until its close runs).
    watching = [c for c in connections.consumers
                if getattr(c, "resumable", False) and c.job is not None and not c.cursor.finished]
    if not watching:
        seen.clear()
        if connections.consumers:
            await get_async_redis().ping()  # all-jobs streams only: still notice an outage
        return 0
    latest = await latest_seqs(sorted({str(c.job.id) for c in watching}))
    nudged = 0
    still = {}
    for consumer in watching:
        behind = latest.get(str(consumer.job.id), 0) > consumer.cursor.last_seq
        if behind and seen.get(consumer) == consumer.cursor.last_seq:
            layer.nudge(consumer.channel_name)
            nudged += 1
        elif behind:
            still[consumer] = consumer.cursor.last_seq
    seen.clear()
    seen.update(still)
    return nudged


# Rounds in a row that could not reach Redis before this process's sockets are closed with
# 1013: nothing reaches them meanwhile, and their clients resume (with backoff) once it is back.
OUTAGE_ROUNDS = 2


async def sweep_forever(layer) -> None:
    """Run sweep_once every JOBCAST_WS_RESYNC_SECONDS for the life of the event loop."""
    seen: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    failed_rounds = 0
    next_token_check = time.monotonic() + option("WS_TOKEN_RECHECK_SECONDS")
    while True:
        await asyncio.sleep(option("WS_RESYNC_SECONDS"))
        try:
            if time.monotonic() >= next_token_check:
                next_token_check = time.monotonic() + option("WS_TOKEN_RECHECK_SECONDS")
                await close_revoked()
            await sweep_once(layer, seen)
            failed_rounds = 0
        except REDIS_DOWN as exc:
            failed_rounds += 1
            logger.warning("resync sweep: Redis unavailable (%s), round %d", type(exc).__name__, failed_rounds)
            if failed_rounds == OUTAGE_ROUNDS:
                await close_all(CloseCode.OVERLOADED)
        except Exception:  # noqa: BLE001 - try again next round
            logger.warning("resync sweep failed", exc_info=True)


async def close_revoked() -> int:
    """Close with 4401 the sockets opened with a token that was revoked (or expired) since; how many."""
    closed = await revoked(list(connections.consumers))
    for consumer in closed:
        await consumer.close(code=CloseCode.NOT_AUTHENTICATED)
    if closed:
        logger.info("closed %d sockets whose token was revoked or expired", len(closed))
    return len(closed)


async def close_all(code: int) -> int:
    """Close every socket of this process with `code`; how many."""
    consumers = list(connections.consumers)
    logger.warning("closing %d sockets with %d: Redis has been unavailable for a while", len(consumers), code)
    for consumer in consumers:
        try:
            await consumer.close(code=code)
        except Exception:  # noqa: BLE001 - a socket that is already gone needs no closing
            logger.debug("socket already closed", exc_info=True)
    return len(consumers)


def ensure_sweeper(layer) -> None:
    """Start this event loop's sweeper once."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(loop)
    if task is None or task.done():
        _sweepers[loop] = loop.create_task(sweep_forever(layer))
