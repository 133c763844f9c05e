"""The raw ceiling: a bare `websockets` server fanning Redis pub/sub out, and bare publishers.

    python -m bench.raw serve PORT         one process, one pub/sub connection (PSUBSCRIBE job:*);
                                           GET /start/<id>?steps=N queues a tiny job (scenario E)
    python -m bench.raw publish SPEC_JSON  runs jobs as `slots` concurrent "workers" would, each
                                           event one PUBLISH (a pipeline of them when interval is 0)
    python -m bench.raw worker SLOTS MAX_JOBS SECONDS
                                           takes queued tiny jobs (BRPOP) and publishes their events

Events have the same fields and size as jobcast's (type, job_id, seq, ts, current, total,
percent, message; a `state` event first and last), so the load generator measures the same.
Every loop is bounded in count and in time. Needs REDIS_URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import defaultdict

import redis.asyncio
from websockets.asyncio.server import broadcast, serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Response

JOBS_QUEUE = "raw:jobs"


def state_event(job_id: str, seq: int, state: str) -> str:
    result = {"counted": 0} if state == "succeeded" else None
    return json.dumps({"type": "state", "job_id": job_id, "seq": seq, "ts": time.time(), "state": state,
                       "result": result, "error": None}, separators=(",", ":"))


def progress_event(job_id: str, seq: int, step: int, steps: int) -> str:
    return json.dumps({"type": "progress", "job_id": job_id, "seq": seq, "ts": time.time(), "current": step,
                       "total": steps, "percent": round(100 * step / steps, 2), "message": f"step {step}"},
                      separators=(",", ":"))


async def serve(port: int) -> None:
    watchers: dict[str, set] = defaultdict(set)
    client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=None)
    pubsub = client.pubsub()
    await pubsub.psubscribe("job:*")

    async def fan_out():
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                sockets = watchers.get(message["channel"][4:].decode())
                if sockets:
                    broadcast(sockets, message["data"].decode())

    async def process_request(connection, request):
        if request.path.startswith("/start/"):  # a tiny job for scenario E: onto the queue, 200
            path, _, query = request.path.partition("?")
            steps = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("steps", 1))
            await client.lpush(JOBS_QUEUE, json.dumps([path.rstrip("/").rsplit("/", 1)[-1], steps]))
            return Response(200, "OK", Headers([("Content-Length", "2")]), b"ok")
        return None

    async def handler(ws):
        job_id = ws.request.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        watchers[job_id].add(ws)
        try:
            await ws.wait_closed()
        finally:
            watchers[job_id].discard(ws)
            if not watchers[job_id]:
                del watchers[job_id]

    task = asyncio.get_running_loop().create_task(fan_out())  # noqa: F841 - runs for the server's life
    async with ws_serve(handler, "127.0.0.1", port, max_size=65536, ping_interval=20,
                        process_request=process_request, backlog=4096):
        await asyncio.Future()


async def run_job(client, job_id: str, steps: int, interval: float) -> int:
    """Publish one job's events: running, `steps` progress, succeeded. Returns how many."""
    channel = f"job:{job_id}"
    await client.publish(channel, state_event(job_id, 1, "running"))
    if interval:
        for step in range(1, steps + 1):
            await client.publish(channel, progress_event(job_id, step + 1, step, steps))
            await asyncio.sleep(interval)
    else:
        for start in range(1, steps + 1, 50):
            pipe = client.pipeline(transaction=False)
            for step in range(start, min(steps, start + 49) + 1):
                pipe.publish(channel, progress_event(job_id, step + 1, step, steps))
            await pipe.execute()
    await client.publish(channel, state_event(job_id, steps + 2, "succeeded"))
    return steps + 2


async def publish(spec: dict) -> dict:
    """Run spec["jobs"] on spec["slots"] concurrent slots (like that many worker processes)."""
    queue: asyncio.Queue = asyncio.Queue()
    for job_id in spec["jobs"]:
        queue.put_nowait(job_id)
    deadline = time.monotonic() + spec.get("timeout", 600)
    published = 0

    async def slot():
        nonlocal published
        client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        while not queue.empty() and time.monotonic() < deadline:
            job_id = queue.get_nowait()
            count = await run_job(client, job_id, spec["steps"], spec["interval_ms"] / 1000)
            published += count  # not `+= await`: that reads the total before the await and loses updates
        await client.aclose()

    await asyncio.gather(*(slot() for _ in range(spec["slots"])))
    return {"published": published}


async def worker(slots: int, max_jobs: int, seconds: float) -> dict:
    """Take tiny jobs off the queue until `max_jobs` are done or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    done = 0

    async def slot():
        nonlocal done
        client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        while done < max_jobs and time.monotonic() < deadline:
            item = await client.brpop([JOBS_QUEUE], timeout=1)
            if item is None:
                continue
            job_id, steps = json.loads(item[1])
            await run_job(client, job_id, steps, 0)
            done += 1
        await client.aclose()

    await asyncio.gather(*(slot() for _ in range(slots)))
    return {"done": done}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    elif command == "publish":
        out = asyncio.run(publish(json.loads(sys.argv[2])))
        print(json.dumps({**out, "cpu_seconds": cpu_seconds()}), flush=True)
    elif command == "worker":
        out = asyncio.run(worker(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        print(json.dumps({**out, "cpu_seconds": cpu_seconds()}), flush=True)
    else:
        raise SystemExit(__doc__)
