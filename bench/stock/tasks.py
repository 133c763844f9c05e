"""Stock task: `async_to_sync(channel_layer.group_send)` per event, as celery-progress does."""

import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from celery import Celery  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402

app = Celery("stock", broker=os.environ["REDIS_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True)


@app.task(name="stock.burst")
def burst(job_id: str, steps: int, interval_ms: float, start_at: float) -> None:
    """Wait for start_at, then send `steps` events to the job's group."""
    layer = get_channel_layer()
    time.sleep(max(0.0, start_at - time.time()))
    for seq in range(1, steps + 1):
        data = {"type": "progress", "job_id": job_id, "seq": seq, "ts": time.time(), "current": seq, "total": steps}
        async_to_sync(layer.group_send)(f"job_{job_id}", {"type": "job.progress", "data": data})
        if interval_ms:
            time.sleep(interval_ms / 1000)
