"""The raw ceiling: a bare `websockets` server fanning Redis pub/sub out, and a pipelined publisher.

    python -m bench.raw serve PORT        one process, one pub/sub connection (PSUBSCRIBE job:*)
    python -m bench.raw publish JOBS STEPS INTERVAL_MS START_AT
"""

import asyncio
import json
import os
import sys
import time
from collections import defaultdict

import redis
import redis.asyncio
import websockets


async def serve(port: int) -> None:
    watchers: dict[str, set] = defaultdict(set)
    client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=None)
    pubsub = client.pubsub()
    await pubsub.psubscribe("job:*")

    async def fan_out():
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                job_id = message["channel"][4:].decode()
                data = message["data"].decode()
                for ws in list(watchers.get(job_id, ())):
                    try:
                        await ws.send(data)
                    except websockets.ConnectionClosed:
                        pass

    async def handler(ws):
        job_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        watchers[job_id].add(ws)
        try:
            await ws.wait_closed()
        finally:
            watchers[job_id].discard(ws)

    asyncio.get_running_loop().create_task(fan_out())
    async with websockets.serve(handler, "127.0.0.1", port, max_size=65536, ping_interval=20):
        await asyncio.Future()


def publish(jobs: int, steps: int, interval_ms: float, start_at: float) -> None:
    """Publish `steps` events to each of `jobs` channels, one pipeline per step."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    time.sleep(max(0.0, start_at - time.time()))
    for seq in range(1, steps + 1):
        pipe = client.pipeline(transaction=False)
        for job in range(jobs):
            job_id = f"raw{job}"
            data = json.dumps({"type": "progress", "job_id": job_id, "seq": seq, "ts": time.time(), "current": seq})
            pipe.publish(f"job:{job_id}", data)
        pipe.execute()
        if interval_ms:
            time.sleep(interval_ms / 1000)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        publish(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
