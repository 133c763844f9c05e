"""The registry of job kinds and the `@job` decorator authors use (docs/writing-jobs.md)."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from pydantic import BaseModel, ValidationError

from jobcast.errors import ApiError

BUILTIN_KIND_MODULES = ("jobcast.jobs.kinds.demo", "jobcast.jobs.kinds.maintenance", "jobcast.jobs.kinds.files")


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    params: type[BaseModel]
    func: Callable[[Any, BaseModel], Any]
    redeliver: bool = True  # run again on another worker when the one running it died
    strict_params: bool = True  # submissions: no type coercion, no unknown keys

    @property
    def submission_model(self) -> type[BaseModel]:
        """The model submissions are validated with: the kind's, refusing unknown keys when strict."""
        return _forbidding_extra(self.params) if self.strict_params else self.params

    def params_schema(self) -> dict:
        """The JSON Schema of the kind's params, as submissions are checked against it."""
        return self.submission_model.model_json_schema()


@functools.cache
def _forbidding_extra(params: type[BaseModel]) -> type[BaseModel]:
    """`params` with unknown keys refused (same name, fields and validators)."""
    return type(params.__name__, (params,), {"model_config": {**params.model_config, "extra": "forbid"},
                                             "__module__": params.__module__, "__doc__": params.__doc__})


_registry: dict[str, JobKind] = {}


def job(name: str, *, params: type[BaseModel], title: str | None = None, redeliver: bool = True,
        strict_params: bool = True):
    """Register the decorated function `f(ctx, params)` as the job kind `name`.

    Submissions are validated strictly unless `strict_params=False`: a value of the wrong
    JSON type (`"5"` or `true` for an int) and a key the model does not have are 400 field
    errors, not coerced or dropped (docs/writing-jobs.md).
    """
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise TypeError(f"job kind {name!r}: params must be a pydantic model class")

    def register(func):
        if name in _registry and _registry[name].func is not func:
            raise ValueError(f"job kind {name!r} is already registered by {_registry[name].func.__module__}")
        _registry[name] = JobKind(name, title or name, params, func, redeliver, strict_params)
        return func

    return register


def get_kind(name: str) -> JobKind | None:
    """The registered kind called `name`, or None."""
    return _registry.get(name)


def all_kinds() -> list[JobKind]:
    """Every registered kind, by name."""
    return [_registry[name] for name in sorted(_registry)]


def validate_params(kind_name: str, params: Any) -> tuple[JobKind, dict]:
    """Check a submission's kind and params; raise a 400 ApiError with field errors when wrong."""
    kind = get_kind(kind_name)
    if kind is None:
        raise ApiError(400, "Unknown job kind.", [{"loc": ["body", "kind"], "msg": f"no job kind named {kind_name!r}"}])
    if not isinstance(params, dict):
        raise ApiError(400, "Invalid params.", [{"loc": ["body", "params"], "msg": "must be a JSON object"}])
    try:
        if kind.strict_params:
            # Strict JSON mode: the types a JSON body can carry, none coerced from another.
            model = kind.submission_model.model_validate_json(orjson.dumps(params), strict=True)
        else:
            model = kind.params.model_validate(params)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", "params", *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ApiError(400, "Invalid params.", errors) from None
    return kind, model.model_dump(mode="json")


def load_builtin_kinds(extra_modules: str = "") -> None:
    """Import the built-in kinds and the modules named in JOBCAST_KIND_MODULES."""
    from jobcast.conf import option

    names = list(BUILTIN_KIND_MODULES)
    names += [m.strip() for m in (extra_modules or option("KIND_MODULES")).split(",") if m.strip()]
    for module in names:
        importlib.import_module(module)
