"""jobcast.js in a real Chromium against a local WebSocket server that misbehaves on purpose: the
same script of drops, duplicates, a 1012, a 4408 and a reset snapshot that the Python client's
watch is tested with (tests/integration/test_client_watch.py), so both clients are held to one rule.

The scripted server also serves the page and the module (straight from
services/web/static/jobcast/jobcast.js) over plain HTTP, so the page and its sockets share
one loopback origin, as on a real site (Chromium's local-network checks refuse a socket to
127.0.0.1 from a page it cannot place on the local network).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from tests.e2e.test_browser import browser, chromium_or_skip  # noqa: F401 - the shared Chromium fixture
from tests.integration.test_client_watch import (EXPECTED_PATHS, JOB_ID, FlakyServer, close_after, document,
                                                 event, resume_script, terminal)

pytestmark = [pytest.mark.e2e]

MODULE = Path(__file__).resolve().parents[2] / "services" / "web" / "static" / "jobcast" / "jobcast.js"
PAGE = '<!doctype html><script type="module">import * as jc from "/static/jobcast/jobcast.js"; window.jc = jc;</script>'


class ServerThread:
    """A FlakyServer on a free port, in its own thread and event loop (the test thread is Playwright's)."""

    def __init__(self, script):
        self.flaky = FlakyServer(script)
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.stop = None

    @staticmethod
    def _files(connection, request):
        """Plain HTTP GETs (no Upgrade) get the page or the module; WebSocket handshakes go on."""
        if "upgrade" in request.headers.get("Connection", "").lower():
            return None
        body, kind = (PAGE.encode(), "text/html") if request.path == "/" else (MODULE.read_bytes(), "application/javascript")
        return Response(200, "OK", Headers([("Content-Type", kind), ("Content-Length", str(len(body)))]), body)

    async def _serve(self):
        self.stop = asyncio.Event()
        async with serve(self.flaky.handler, "127.0.0.1", 0, process_request=self._files) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stop.wait()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


@pytest.fixture
def watch_with(browser):  # noqa: F811
    """Run WATCH in a page served by a scripted server; returns (what the page saw, the server's paths)."""
    context = browser.new_context()
    errors = []

    def run(script, options):
        with ServerThread(script) as server:
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_function("window.jc !== undefined")
            seen = page.evaluate(WATCH, [server.port, {"jobId": JOB_ID, **options}])
        return seen, server.flaky.paths

    yield run
    context.close()
    assert errors == []


WATCH = """([port, options]) => new Promise((resolve) => {
  const seen = {messages: [], statuses: []};
  const record = (kind) => (message, job) => seen.messages.push({kind, seq: message.seq ?? message.job.seq,
                                                                  reset: message.reset ?? null, jobSeq: job ? job.seq : null,
                                                                  current: job ? job.progress.current : null});
  const auth = options.tickets ? (() => { let n = 0; return async () => `t${++n}`; })() : undefined;
  window.jc.watchJob(options.jobId, {
    baseUrl: `http://127.0.0.1:${port}`, backoff: {initial: 50, cap: 200, giveUpAfter: 30000}, auth,
    job: options.job, after: options.after,
    onSnapshot: record("snapshot"), onProgress: record("progress"), onLog: record("log"), onState: record("state"),
    onStatus: (status, detail) => {
      seen.statuses.push([status, detail.code ?? null, detail.reason ?? null]);
      if (status === "closed") resolve(seen);
    },
  });
})"""


def test_watch_job_resumes_after_drops_without_gaps_or_duplicates(watch_with):
    seen, paths = watch_with(resume_script(), {})
    assert paths == EXPECTED_PATHS  # after = the last seq it had, each time
    events = [m for m in seen["messages"] if m["kind"] != "snapshot"]
    assert [m["seq"] for m in events] == [*range(4, 13), *range(16, 21)]  # 8, 9 replayed: dropped
    assert [m["kind"] for m in seen["messages"]].count("log") == 1
    assert [(m["seq"], m["reset"]) for m in seen["messages"] if m["kind"] == "snapshot"] == [(3, False), (15, True)]
    # The document folds every event in (applyEvent): after the reset, from the reset's state.
    assert seen["messages"][-1] == {"kind": "state", "seq": 20, "reset": None, "jobSeq": 20, "current": 19}
    statuses = seen["statuses"]
    assert [s[1] for s in statuses if s[0] == "reconnecting"] == [1006, 1012, 4408]
    assert statuses[0][0] == "connecting" and statuses[-1] == ["closed", None, "finished"]
    assert statuses.count(["live", None, None]) == 4


@pytest.mark.parametrize("code, reason", [(4404, "not found"), (4403, "forbidden: staff users only"),
                                          (1008, "refused by the server (policy violation)"),
                                          (4401, "not authenticated")])
def test_watch_job_stops_on_the_codes_that_say_retrying_cannot_help(watch_with, code, reason):
    seen, paths = watch_with([lambda ws: close_after(ws, [], code)], {})
    assert len(paths) == 1
    assert seen["statuses"][-1] == ["closed", code, reason]


def test_a_refused_ticket_is_replaced_once_then_the_watch_stops(watch_with):
    script = [lambda ws: close_after(ws, [], 4401), lambda ws: close_after(ws, [], 4401)]
    seen, paths = watch_with(script, {"tickets": True})
    assert paths == [f"/ws/jobs/{JOB_ID}/?ticket=t1", f"/ws/jobs/{JOB_ID}/?ticket=t2"]
    assert seen["statuses"][-1] == ["closed", 4401, "not authenticated"]


def test_a_page_that_has_the_document_starts_after_its_seq(watch_with):
    script = [lambda ws: close_after(ws, [event(5), event(6), terminal(7)], 1000)]
    seen, paths = watch_with(script, {"job": document(4)})
    assert paths == [f"/ws/jobs/{JOB_ID}/?after=4"]
    assert [(m["kind"], m["seq"], m["jobSeq"]) for m in seen["messages"]] == [
        ("progress", 5, 5), ("progress", 6, 6), ("state", 7, 7)]


def test_a_finished_job_is_not_watched(watch_with):
    seen, paths = watch_with([], {"job": document(20, state="succeeded")})
    assert paths == [] and seen == {"messages": [], "statuses": [["closed", None, "finished"]]}
