"""`demo.count`: counts to `steps`, reporting progress at every step and logging every `log_every` (the contract's demo kind)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobcast.jobs.registry import job


class CountParams(BaseModel):
    steps: int = Field(100, ge=1, le=1_000_000, description="How many steps to count.")
    interval_ms: int = Field(0, ge=0, le=60_000, description="Pause after each step, in milliseconds.")
    fail_at: int | None = Field(None, description="Raise an error at this step (to see a failure).")
    log_every: int = Field(0, ge=0, le=1_000_000, description="Log a line every this many steps (0: never).")


class CountFailure(Exception):
    """The failure `fail_at` asks for."""


@job("demo.count", params=CountParams, title="Count to N")
def count(ctx, params: CountParams):
    """Count from 1 to `steps`, optionally pausing between steps and failing on purpose."""
    for step in range(1, params.steps + 1):
        if params.fail_at is not None and step == params.fail_at:
            raise CountFailure(f"failed at step {step} as asked")
        ctx.progress(step, total=params.steps, message=f"step {step}")
        if params.log_every and step % params.log_every == 0:
            ctx.log(f"reached step {step} of {params.steps}")
        if params.interval_ms:
            ctx.sleep(params.interval_ms / 1000)
    return {"counted": params.steps}
