"""A job kind outside jobcast, loaded through JOBCAST_KIND_MODULES in tests."""

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
