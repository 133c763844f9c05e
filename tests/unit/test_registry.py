"""The registry of job kinds and params validation."""

import pytest
from pydantic import BaseModel

from jobcast.errors import ApiError
from jobcast.jobs.registry import all_kinds, get_kind, job, validate_params


class EmptyParams(BaseModel):
    pass


def test_builtin_kinds_are_registered():
    names = [k.name for k in all_kinds()]
    assert "demo.count" in names and "maintenance.prune_jobs" in names
    schema = get_kind("demo.count").params_schema()
    assert schema["properties"]["steps"]["minimum"] == 1
    assert schema["properties"]["steps"]["maximum"] == 1_000_000
    assert schema["properties"]["interval_ms"]["maximum"] == 60_000


def test_validate_params_fills_defaults():
    kind, params = validate_params("demo.count", {})
    assert kind.name == "demo.count"
    assert params == {"steps": 100, "interval_ms": 0, "fail_at": None, "log_every": 0}


@pytest.mark.parametrize(
    "kind,params,loc",
    [
        ("nope", {}, ["body", "kind"]),
        ("demo.count", [], ["body", "params"]),
        ("demo.count", {"steps": 0}, ["body", "params", "steps"]),
        ("demo.count", {"steps": 1_000_001}, ["body", "params", "steps"]),
        ("demo.count", {"interval_ms": -1}, ["body", "params", "interval_ms"]),
        ("demo.count", {"steps": "many"}, ["body", "params", "steps"]),
    ],
)
def test_bad_submissions_name_the_field(kind, params, loc):
    with pytest.raises(ApiError) as caught:
        validate_params(kind, params)
    assert caught.value.status == 400
    assert caught.value.errors[0]["loc"] == loc


def test_registering_a_kind_twice_is_refused():
    @job("test.once", params=EmptyParams, title="Once")
    def once(ctx, params):
        return None

    assert get_kind("test.once").title == "Once"
    with pytest.raises(ValueError, match="already registered"):

        @job("test.once", params=EmptyParams)
        def again(ctx, params):
            return None


def test_params_must_be_a_pydantic_model():
    with pytest.raises(TypeError):
        job("test.bad", params=dict)


def test_kind_modules_named_in_the_environment_are_loaded():
    from jobcast.jobs.registry import load_builtin_kinds

    assert get_kind("sample.greet") is None or get_kind("sample.greet").redeliver is False
    load_builtin_kinds("tests.sample_kinds")
    kind = get_kind("sample.greet")
    assert kind.title == "Say hello" and kind.redeliver is False
    assert validate_params("sample.greet", {"name": "ada"})[1] == {"name": "ada"}
