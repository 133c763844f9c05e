"""Cost of publishing one job event from synchronous (Celery) code, measured three ways in one run.

- stock:   `async_to_sync(channel_layer.group_send)` per event, as the Channels docs and
           celery-progress teach (plus nothing for seq or history);
- jobcast: a job's `JobPublisher.publish_one` (seq + history + live snapshot + fan-out in one Lua call);
- floor:   one Redis PING round trip on a persistent connection.

Each is run in alternating rounds; the report gives µs per event (median of rounds) and
the ratio stock/jobcast. Usage: python bench/publish_path.py [events_per_round] [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import start_redis  # noqa: E402


def main(events: int = 1000, rounds: int = 5) -> None:
    server = start_redis(Path(tempfile.mkdtemp()) / "redis")
    os.environ["REDIS_URL"] = server.url
    os.environ["JOBCAST_DATA_DIR"] = tempfile.mkdtemp()
    try:
        from jobcast import django_setup

        django_setup()
        from asgiref.sync import async_to_sync
        from channels_redis.core import RedisChannelLayer

        from jobcast.events.groups import job_group
        from jobcast.events.publisher import JobPublisher
        from jobcast.events.schema import ProgressEvent
        from jobcast.redis_client import get_redis

        # The stock path is the Channels docs' default layer, channels-redis's core
        # RedisChannelLayer, with one watching channel in the group.
        layer = RedisChannelLayer(hosts=[server.url], capacity=100_000)  # no round reaches it
        job_id = "00000000-0000-0000-0000-000000000001"
        watcher = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(job_group(job_id), watcher)
        redis = get_redis()

        def drain():
            """Empty the watcher's queue so no round runs into the channel capacity."""
            keys = redis.keys("asgi*specific*")
            if keys:
                redis.delete(*keys)

        def stock():
            for n in range(events):
                async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.progress", "current": n, "ts": time.time()})

        publisher = JobPublisher(job_id, 1)

        def jobcast():
            for n in range(events):
                publisher.publish_one(ProgressEvent(job_id=job_id, ts=time.time(), current=n, total=events))

        def floor():
            for _ in range(events):
                redis.ping()

        results: dict[str, list[float]] = {"stock": [], "jobcast": [], "redis PING": []}
        for _ in range(rounds):
            for name, run in (("stock", stock), ("jobcast", jobcast), ("redis PING", floor)):
                drain()
                started = time.perf_counter()
                run()
                results[name].append((time.perf_counter() - started) / events * 1e6)
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"publish one event from sync code ({events} events x {rounds} rounds, median µs/event):")
        for name, value in medians.items():
            spread = f"{min(results[name]):.0f}-{max(results[name]):.0f}"
            print(f"  {name:<11} {value:8.1f} µs  (rounds: {spread})")
        print(f"  stock / jobcast = {medians['stock'] / medians['jobcast']:.1f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
