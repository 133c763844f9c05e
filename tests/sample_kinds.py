"""Job kinds outside jobcast, loaded through JOBCAST_KIND_MODULES in tests."""

from pathlib import Path

from pydantic import BaseModel

from jobcast.jobs.registry import job


class GreetParams(BaseModel):
    name: str


@job("sample.greet", params=GreetParams, title="Say hello", redeliver=False)
def greet(ctx, params):
    ctx.log(f"hello {params.name}")
    return {"greeting": f"hello {params.name}"}


class LenientParams(BaseModel):
    times: int = 1


@job("sample.lenient", params=LenientParams, title="Accept loose params", strict_params=False)
def lenient(ctx, params):
    return {"times": params.times}


class OnceParams(BaseModel):
    steps: int = 60
    interval_ms: int = 50
    runs_file: str  # gets one line per run, so a test counts runs even if an event was never published


@job("sample.once", params=OnceParams, title="Count slowly, never twice", redeliver=False)
def once(ctx, params):
    with Path(params.runs_file).open("a") as runs:
        runs.write("ran\n")
    for step in range(1, params.steps + 1):
        ctx.progress(step, total=params.steps)
        ctx.sleep(params.interval_ms / 1000)
    return {"counted": params.steps}
