"""`test.loud`: a job whose log lines are large, loaded through JOBCAST_KIND_MODULES by the slow-reader
test (tests/e2e/test_ws_faults.py): a stalled reader's buffers fill after a few hundred events, not
tens of thousands."""

from pydantic import BaseModel, Field

from jobcast.jobs.registry import job


class LoudParams(BaseModel):
    lines: int = Field(ge=1)
    line_bytes: int = Field(ge=1, le=32_768)
    interval_ms: int = Field(0, ge=0)


@job("test.loud", params=LoudParams, title="Log large lines")
def loud(ctx, params):
    for line in range(1, params.lines + 1):
        ctx.log(f"{line:08d} " + "x" * params.line_bytes)
        if params.interval_ms:
            ctx.sleep(params.interval_ms / 1000)
    return {"lines": params.lines}
