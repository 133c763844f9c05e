"""Hostile input through the running stack's front door (nginx, gunicorn, uvicorn): WebSocket frames
fuzzed with Hypothesis, and injection in the ids and `after` of HTTP paths and socket URLs.

The contract (docs/protocol.md): a client message that is not `{"type": "cancel"}` gets an
`error` message and the socket stays open until the fifth, which closes it with 1008; a frame
over 64 KiB closes it with 1009; an unusable `after` is 1008 on a socket and 400 on HTTP; an id
that names no job of the user is 4404 or 404. Whatever is sent, the ws process stays up and
serves other sockets, and HTTP never answers 5xx or HTML.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

USER = "hostile"
FRAME_LIMIT = 64 * 1024
MAX_BAD_MESSAGES = 5
EVENT_TYPES = {"snapshot", "progress", "log", "state"}
FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def job(live_stack):
    """A job of USER that runs for the whole module, cancelled afterwards."""
    with live_stack.running_job(USER) as running:
        yield running


@pytest.fixture(scope="module")
def ws_pid(live_stack):
    """The ws process the module starts with: every test ends with it still serving."""
    (pid,) = live_stack.pids("jobcast.ws.server")
    return pid


def bearer(live_stack) -> dict:
    return {"Authorization": f"Bearer {live_stack.token(USER)}"}


def open_socket(live_stack, path: str, headers: dict | None = None):
    return connect(f"{live_stack.ws_url}{path}", additional_headers=headers or bearer(live_stack),
                   max_size=None, open_timeout=20, close_timeout=5)


def next_message(ws, timeout: float = 10) -> dict:
    """The next JSON text frame from the server (every server message is one)."""
    frame = ws.recv(timeout=timeout)
    assert isinstance(frame, str), frame
    return orjson.loads(frame)


def next_error(ws) -> dict:
    """The next `error` message, past the job's own events."""
    while True:
        message = next_message(ws)
        if message["type"] == "error":
            return message
        assert message["type"] in EVENT_TYPES, message


def close_code(ws, timeout: float = 10) -> int:
    """The code the server closes with within `timeout`, past the messages still on their way (else TimeoutError)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            message = next_message(ws, max(deadline - time.monotonic(), 0))
            assert message["type"] in EVENT_TYPES | {"error"}, message
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the connection ended without a close frame"
        return closed.rcvd.code


def assert_still_serving(live_stack, job, ws_pid) -> None:
    """The ws process is the same one, and a new socket gets its snapshot."""
    assert live_stack.pids("jobcast.ws.server") == [ws_pid]
    with open_socket(live_stack, f"/ws/jobs/{job['id']}/") as ws:
        snapshot = next_message(ws)
        assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == job["id"]


# --- frames -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
# Messages shaped like the one a client may send, with the wrong type, wrong values or extra keys.
near_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["cancel", "CANCEL", "subscribe", "ping", "", "snapshot"]) | json_values},
    optional={"job": json_values, "after": json_values, "extra": json_values},
)


def is_the_cancel_message(frame) -> bool:
    """`{"type": "cancel"}` is the one message a client may send (it would cancel the fixture's job)."""
    if not isinstance(frame, str):
        return False
    try:
        return orjson.loads(frame) == {"type": "cancel"}
    except orjson.JSONDecodeError:
        return False


frames = (
    st.binary(max_size=2048)  # binary frames
    | st.text(max_size=2048)  # any text: mostly not JSON
    | st.text(alphabet="{}[]\":,0123456789.-tfnaelsruc ", max_size=200)  # JSON-ish, mostly invalid
    | json_values.map(json.dumps)  # JSON of the wrong shape (the standard library's: integers of any size)
    | near_messages.map(json.dumps)
).filter(lambda frame: not is_the_cancel_message(frame))


@given(sent=st.lists(frames, min_size=1, max_size=MAX_BAD_MESSAGES + 2), all_jobs=st.booleans())
@FUZZ
def test_fuzzed_frames_get_errors_then_1008_and_the_ws_process_stays_up(live_stack, job, ws_pid, sent, all_jobs):
    path = "/ws/jobs/" if all_jobs else f"/ws/jobs/{job['id']}/"
    with open_socket(live_stack, path) as ws:
        if not all_jobs:
            assert next_message(ws)["type"] == "snapshot"
        for frame in sent:
            try:
                ws.send(frame)
            except ConnectionClosed:  # the server closed after the fifth: later frames go nowhere
                break
        answered = min(len(sent), MAX_BAD_MESSAGES)
        errors = [next_error(ws) for _ in range(answered)]
        assert all(error["code"] == "bad_message" and error["detail"] for error in errors), errors
        if len(sent) >= MAX_BAD_MESSAGES:
            assert close_code(ws) == 1008
    assert live_stack.pids("jobcast.ws.server") == [ws_pid]


@pytest.mark.parametrize("binary", [False, True])
def test_a_frame_over_64_kib_closes_with_1009_and_one_at_the_limit_is_an_error(live_stack, job, ws_pid, binary):
    def frame(size: int):
        return b"\x00" * size if binary else "x" * size

    with open_socket(live_stack, f"/ws/jobs/{job['id']}/") as ws:
        assert next_message(ws)["type"] == "snapshot"
        ws.send(frame(FRAME_LIMIT))
        assert next_error(ws)["code"] == "bad_message"
        ws.send(frame(FRAME_LIMIT + 1))
        assert close_code(ws) == 1009
    with open_socket(live_stack, f"/ws/jobs/{job['id']}/") as ws:  # megabytes: refused as early
        assert next_message(ws)["type"] == "snapshot"
        ws.send(frame(8 * 1024 * 1024))
        assert close_code(ws) == 1009
    assert_still_serving(live_stack, job, ws_pid)


def test_a_flood_of_sockets_sending_garbage_leaves_the_ws_process_serving(live_stack, job, ws_pid):
    """Many sockets at once, each sent garbage until it is closed, beside a watcher that keeps streaming."""
    with ExitStack() as opened:
        watcher = opened.enter_context(open_socket(live_stack, f"/ws/jobs/{job['id']}/?after=0"))
        sockets = [opened.enter_context(open_socket(live_stack, f"/ws/jobs/{job['id']}/")) for _ in range(50)]
        for ws in sockets:
            for _ in range(MAX_BAD_MESSAGES):
                ws.send(b"\xff\xfe")
        assert [close_code(ws) for ws in sockets] == [1008] * len(sockets)
        seen = [next_message(watcher, 15) for _ in range(2)]
        assert [m["type"] in EVENT_TYPES for m in seen] == [True, True], seen
    assert_still_serving(live_stack, job, ws_pid)


# --- ids and `after` ----------------------------------------------------------------------------

HOSTILE_IDS = [
    "..", "../..", "..%2F..%2Fkinds", "%2e%2e", "%00", "x%00y", "' OR '1'='1", "1; DROP TABLE jobs_job; --",
    "1 UNION SELECT key_hash FROM accounts_apitoken", "%27%22%3C%3E", "9" * 40, "-1", "0", "1e309",
    "00000000-0000-0000-0000-000000000000", "١٢٣", "ｊｏｂ", "\u202eevil", "💥", "%F0%9F%92%A5", "%ff%fe", "a" * 2000,
    "null", "{id}", "$(id)", "%0d%0aSet-Cookie:x=1",
]
HOSTILE_AFTERS = ["-1", "1.5", "1e3", "0x10", "abc", "9" * 19, "9" * 40, "%00", "1%00", "' OR 1=1", "١", "٣", "²",
                  "18446744073709551616", "[]", "%F0%9F%92%A5"]
# Integers in another spelling: HTTP reads them as the integer they spell (pydantic's int); a
# socket's `after` must be plain ASCII digits (docs/protocol.md), so these are 1008 there.
LAX_INTEGERS = {"-0": 0, "+1": 1, " 1": 1, "1 ": 1}


def quoted(value: str) -> str:
    """A value for a URL: percent-encoded unless it already is (then sent as it is, raw)."""
    return value if "%" in value else quote(value, safe="")


def assert_clean_http_refusal(response, statuses=(400, 404)) -> None:
    """A 4xx with the contract's JSON error body: never a 5xx, never HTML."""
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"detail", "errors"} and isinstance(body["detail"], str), body


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_hostile_job_ids_are_a_json_404_on_http(live_stack, job_id):
    with live_stack.client(USER) as client:
        for method, path in (("GET", "/api/jobs/{}/"), ("GET", "/api/jobs/{}/events/?after=0"),
                             ("POST", "/api/jobs/{}/cancel/")):
            response = client.request(method, path.format(quoted(job_id)))
            # `..` segments are resolved before routing: they reach another route, never a 5xx.
            assert response.status_code < 500 and "<html" not in response.text.lower(), (method, path, response.text[:300])
            if response.status_code >= 400:
                assert_clean_http_refusal(response, (400, 404, 405))


@pytest.mark.parametrize("after", HOSTILE_AFTERS)
def test_a_hostile_after_is_a_json_400_on_http_and_1008_on_a_socket(live_stack, job, ws_pid, after):
    with live_stack.client(USER) as client:
        assert_clean_http_refusal(client.get(f"/api/jobs/{job['id']}/events/?after={quoted(after)}"), (400,))
    with open_socket(live_stack, f"/ws/jobs/{job['id']}/?after={quoted(after)}") as ws:
        assert close_code(ws) == 1008
    assert live_stack.pids("jobcast.ws.server") == [ws_pid]


@pytest.mark.parametrize("after", sorted(LAX_INTEGERS))
def test_an_integer_in_another_spelling_is_read_on_http_and_1008_on_a_socket(live_stack, job, after):
    with live_stack.client(USER) as client:
        response = client.get(f"/api/jobs/{job['id']}/events/?after={quoted(after)}")
        plain = client.get(f"/api/jobs/{job['id']}/events/?after={LAX_INTEGERS[after]}")
    assert response.status_code == 200 and [e["seq"] for e in response.json()["events"]][:1] == [
        e["seq"] for e in plain.json()["events"]][:1]
    with open_socket(live_stack, f"/ws/jobs/{job['id']}/?after={quoted(after)}") as ws:
        assert close_code(ws) == 1008


def socket_refusal(live_stack, path: str) -> int | None:
    """The close code a socket on `path` is refused with, the HTTP status of a refused handshake, or
    None when the socket stays open (checked for a second)."""
    try:
        with open_socket(live_stack, path) as ws:
            try:
                return close_code(ws, timeout=1)
            except TimeoutError:
                return None
    except InvalidStatus as refused:
        response = refused.response
        assert response.headers["content-type"].startswith("application/json"), response.headers
        return response.status_code


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_hostile_job_ids_are_refused_with_4404_on_a_socket(live_stack, job_id):
    # `..` segments are resolved first: /ws/jobs/../ is the user's own stream (the handshake
    # then succeeds), /ws/jobs/../../ is the web tier's JSON 404; nginx refuses a NUL with 400.
    code = socket_refusal(live_stack, f"/ws/jobs/{quoted(job_id)}/")
    assert code in (4404, 400, 404) or (code is None and job_id in ("..", "%2e%2e")), code


@given(job_id=st.text(min_size=1, max_size=64), after=st.text(max_size=24))
@FUZZ
def test_any_id_and_after_are_refused_cleanly(live_stack, ws_pid, job_id, after):
    with live_stack.client(USER) as client:
        response = client.get(f"/api/jobs/{quote(job_id, safe='')}/events/", params={"after": after})
        assert response.status_code < 500 and "<html" not in response.text.lower(), response.text[:300]
        if response.status_code >= 400:
            assert_clean_http_refusal(response, (400, 404, 405))
    code = socket_refusal(live_stack, f"/ws/jobs/{quote(job_id, safe='')}/?after={quote(after, safe='')}")
    assert code in (4404, 1008, 400, 404), code
    assert live_stack.pids("jobcast.ws.server") == [ws_pid]
