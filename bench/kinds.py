"""`bench.burst`: progress events at a set rate, starting at an agreed wall-clock time.

Loaded into jobcast's worker with JOBCAST_KIND_MODULES=bench.kinds, so that every system
starts emitting only after the load generator's watchers are connected.
"""

import time

from pydantic import BaseModel, Field

from jobcast.jobs.registry import job


class BurstParams(BaseModel):
    steps: int = Field(100, ge=1, le=1_000_000)
    interval_ms: float = Field(0, ge=0)
    start_at: float = 0.0


@job("bench.burst", params=BurstParams, title="Benchmark burst")
def burst(ctx, params):
    """Wait for start_at, then report `steps` progress events, `interval_ms` apart."""
    time.sleep(max(0.0, params.start_at - time.time()))
    for step in range(1, params.steps + 1):
        ctx.progress(step, total=params.steps)
        if params.interval_ms:
            time.sleep(params.interval_ms / 1000)
    return {"steps": params.steps}
