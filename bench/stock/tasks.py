"""Stock task: `async_to_sync(channel_layer.group_send)` per event, as celery-progress does.

The events carry the same fields as jobcast's (a `state` event first and last, `progress`
in between, each with a per-job `seq` and the publish time `ts`) so that the load generator
measures the same things. `stock.gate` is the benchmark's own start gate, not part of stock.
"""

import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from celery import Celery  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402

app = Celery("stock", broker=os.environ["REDIS_URL"])
# The same queue settings as jobcast's worker (acks late, prefetch 1, no results).
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
                broker_connection_retry_on_startup=True)


@app.task(name="stock.count")
def count(job_id: str, steps: int, interval_ms: int) -> dict:
    """Count to `steps`, sending every event to the job's group."""
    layer = get_channel_layer()
    group = f"job_{job_id}"

    def send(seq, data):
        data.update(job_id=job_id, seq=seq, ts=time.time())
        async_to_sync(layer.group_send)(group, {"type": "job.event", "data": data})

    send(1, {"type": "state", "state": "running", "result": None, "error": None})
    for step in range(1, steps + 1):
        send(step + 1, {"type": "progress", "current": step, "total": steps,
                        "percent": round(100 * step / steps, 2), "message": f"step {step}"})
        if interval_ms:
            time.sleep(interval_ms / 1000)
    send(steps + 2, {"type": "state", "state": "succeeded", "result": {"counted": steps}, "error": None})
    return {"counted": steps}


@app.task(name="stock.gate")
def gate(seconds: float = 300) -> None:
    """Hold a worker process until the benchmark releases it (so watchers connect first)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.incr("bench:gates_running")
    try:
        client.blpop(["bench:gate"], timeout=seconds)
    finally:
        client.decr("bench:gates_running")
