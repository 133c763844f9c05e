"""The HTTP API fuzzed from its own OpenAPI document (schemathesis) through the running stack's front door.

Every operation of `GET /api/schema/` gets schemathesis's boundary cases and a bounded,
derandomized set of generated requests, valid and invalid, with a token: no answer is a 5xx,
every error is the contract's JSON body (never HTML), and the answers conform to the document
(status codes, content types, response schemas, invalid data refused). The fuzzing user's jobs
are cancelled afterwards, so the shared stack's workers are free for the next test.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = [pytest.mark.e2e]

FUZZ_USER = "fuzzer"
MAX_EXAMPLES = 100  # per operation and mode (7 operations): well under a minute here


@pytest.fixture(scope="module")
def api_schema(live_stack):
    """The stack's own OpenAPI document, loaded from the running web tier through nginx."""
    schema = schemathesis.openapi.from_url(f"{live_stack.url}/api/schema/", timeout=30)
    yield schema
    cancel_active_jobs(live_stack)


def cancel_active_jobs(live_stack) -> None:
    """Cancel what the fuzzing submitted, so no generated long job holds the shared workers."""
    with live_stack.client(FUZZ_USER) as client:
        for state in ("queued", "running"):
            for job in client.get("/api/jobs/", params={"state": state, "limit": 100}).json()["items"]:
                client.post(f"/api/jobs/{job['id']}/cancel/")


@schemathesis.check
def error_bodies_are_the_contracts_json(ctx, response, case):
    """An error answer is `{"detail": str, "errors": list}` as application/json, never an HTML page."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"{response.status_code} answered as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and isinstance(body.get("errors"), list), body
    return None


# Where a request the document allows may rightly be a 400, schemathesis's "valid data is
# accepted" check is left out (every other check runs):
VALUES_THE_DOCUMENT_CANNOT_STATE = {
    # `kind` and `params` are checked against the registered kinds (`GET /api/kinds/` publishes
    # each one's params schema); the document types them as any string and any object.
    "POST /api/jobs/",
    # `cursor` is opaque: only a `next` the API gave is one.
    "GET /api/jobs/",
}


def excluded_checks(operation) -> list:
    return [positive_data_acceptance] if operation.label in VALUES_THE_DOCUMENT_CANNOT_STATE else []


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx_or_html(api_schema, live_stack, mode):
    # Each operation on its own (schemathesis's lazy pytest loader does not run on pytest 9), so
    # a failure names the operation, after Hypothesis has shrunk it to its smallest example.
    headers = {"Authorization": f"Bearer {live_stack.token(FUZZ_USER)}"}
    failures, operations = [], [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
        def fuzz(case):
            case.call_and_validate(base_url=live_stack.url, headers=headers, timeout=30,
                                   excluded_checks=excluded_checks(operation))

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - reported below, with the operation's name
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
