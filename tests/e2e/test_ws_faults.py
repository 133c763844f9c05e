"""The ws tier under faults and slow readers, against the whole stack as real processes.

- A ws process SIGKILLed (no drain) while 50 watchers follow running jobs through nginx: each
  watcher (jobcast.client's JobWatch, the contract's resuming client) reconnects to the process
  the supervisor starts again and resumes with `after`; on the wire, every watcher gets each
  seq from its snapshot's to the terminal event exactly once.
- A reader that stops reading beside 100 healthy watchers of one busy job: the healthy ones get
  every event within a generous latency bound, the ws process's memory stays bounded, and the
  stalled socket is closed (4408) within JOBCAST_WS_SEND_TIMEOUT instead of holding its consumer.

docs/reliability.md, "The WebSocket tier under faults and slow readers", states the figures.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import httpx
import orjson
import pytest
import websockets

from jobcast.client import Backoff
from jobcast.client.watch import JobWatch
from jobcast.events.schema import SnapshotMessage
from tests.e2e.conftest import start_stack
from jobcast.ws.protocol import STALLED_DROP_SECONDS
from tests.support import read_to_the_end, rss_kib, stalled_client, wait_until

pytestmark = [pytest.mark.e2e]

JOBS = 10
WATCHERS = 50
HEALTHY_WATCHERS = 100
SEND_TIMEOUT = 2.0  # JOBCAST_WS_SEND_TIMEOUT of this stack
# The busy job: 8 KiB log lines 10 ms apart (about 8 s). A stalled reader's kernel buffers on
# loopback take ~3 MB before its sends block: a few hundred of these, not tens of thousands of
# small events.
BUSY_LINES, LINE_BYTES, LINE_INTERVAL_MS = 800, 8192, 10
# Generous correctness bounds (a shared 2-core machine), not speed targets:
LATENCY_P99_BOUND = 2.0  # seconds from an event's publish to a healthy watcher's receive, 99th percentile
LATENCY_MAX_BOUND = 5.0
RSS_GROWTH_BOUND_KIB = 64 * 1024  # the ws process's growth over the slow-reader run
STALLED_CLOSE_BOUND = 20.0  # seconds from the stalled reader's handshake to its 4408


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack, stop = start_stack(
        tmp_path_factory.mktemp("ws-faults"),
        JOBCAST_FRONT_DOOR="nginx",
        JOBCAST_WORKER_CONCURRENCY=str(JOBS),  # every job runs at once, so the kill finds them all live
        JOBCAST_WS_MAX_CONNECTIONS_PER_USER="500",
        JOBCAST_WS_SEND_TIMEOUT=str(SEND_TIMEOUT),
        JOBCAST_KIND_MODULES="tests.e2e.loud_kind",
        JOBCAST_CHANNEL_CAPACITY="100",  # the stalled socket's queue overflows within its send timeout
    )
    try:
        yield stack
    finally:
        stop()


def ws_pid(stack) -> int:
    (pid,) = stack.pids("jobcast.ws.server")
    return pid


def ws_metric(stack, name: str) -> float:
    """The ws process's value of one sample (`name` with its labels), 0 when absent."""
    text = httpx.get(f"http://127.0.0.1:{stack.ws_port}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def submit(stack, user: str, kind: str, params: dict, count: int = 1) -> list[str]:
    with stack.client(user) as client:
        return [client.post("/api/jobs/", json={"kind": kind, "params": params}).json()["id"] for _ in range(count)]


# --- SIGKILL ------------------------------------------------------------------------------------

class RecordingWatch(JobWatch):
    """JobWatch that also records what came over the wire, before its own de-duplication."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire: list[int] = []  # every event seq received, duplicates included
        self.snapshots: list[SnapshotMessage] = []
        self.retries: list[str] = []
        self.on_retry = lambda reason, delay: self.retries.append(reason)

    def _accept(self, raw):
        data = orjson.loads(raw)
        if data.get("type") == "snapshot":
            self.snapshots.append(SnapshotMessage.model_validate(data))
        elif "seq" in data:
            self.wire.append(data["seq"])
        return super()._accept(raw)


async def follow(watch: RecordingWatch, started: asyncio.Event) -> list:
    yielded = []
    async for message in watch:
        yielded.append(message)
        if len(yielded) == 2:  # the snapshot and a live event: this watcher is following
            started.set()
    return yielded


async def watch_through_a_kill(stack, jobs: list[str], kill) -> list[tuple[RecordingWatch, list]]:
    token = stack.token("sigkill")
    watches = [RecordingWatch(f"{stack.ws_url}/ws/jobs/{jobs[i % len(jobs)]}/", token,
                              backoff=Backoff(initial=0.2, cap=2.0, give_up_after=60))
               for i in range(WATCHERS)]
    started = [asyncio.Event() for _ in watches]
    tasks = [asyncio.create_task(follow(watch, event)) for watch, event in zip(watches, started)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 60)
    kill()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return list(zip(watches, results))


def test_a_sigkilled_ws_process_loses_and_repeats_nothing(stack):
    victim = ws_pid(stack)
    jobs = submit(stack, "sigkill", "demo.count", {"steps": 150, "interval_ms": 40}, count=JOBS)
    followed = asyncio.run(watch_through_a_kill(stack, jobs, lambda: os.kill(victim, signal.SIGKILL)))
    for watch, yielded in followed:
        assert watch.final is not None and watch.final.state == "succeeded"
        assert watch.retries, "every watcher was on the killed process and had to reconnect"
        (snapshot,) = watch.snapshots  # the first connection's; resuming with `after` needs none
        first = snapshot.job.seq
        # On the wire: each seq after the snapshot's, once, in order, up to the terminal event.
        assert watch.wire == list(range(first + 1, watch.final.seq + 1)), ("a gap or a duplicate", watch.retries)
        assert [message.seq for message in yielded[1:]] == watch.wire
    assert victim not in stack.pids("jobcast.ws.server")  # the supervisor started a new one
    wait_until(lambda: ws_metric(stack, "jobcast_ws_connections") == 0, 10, "every socket to be released")


# --- a reader that stops reading ----------------------------------------------------------------

async def watch_healthily(url: str, token: str, connected: asyncio.Event) -> tuple[list[int], list[float]]:
    """Follow one job to its end: the event seqs and each event's latency (receive time - its ts)."""
    seqs, latencies = [], []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        async for raw in ws:
            now = time.time()
            message = orjson.loads(raw)
            if message["type"] == "snapshot":
                seqs.append(message["job"]["seq"])
                connected.set()
                continue
            seqs.append(message["seq"])
            latencies.append(now - message["ts"])
    assert ws.close_code == 1000
    return seqs, latencies


async def stall_beside_healthy_watchers(stack) -> dict:
    token = stack.token("slow")
    pid = ws_pid(stack)
    rss_before = rss_kib(pid)
    params = {"lines": BUSY_LINES, "line_bytes": LINE_BYTES, "interval_ms": LINE_INTERVAL_MS}
    (job_id,) = submit(stack, "slow", "test.loud", params)
    path = f"/ws/jobs/{job_id}/"
    connected = [asyncio.Event() for _ in range(HEALTHY_WATCHERS)]
    healthy = [asyncio.create_task(watch_healthily(f"{stack.ws_url}{path}", token, event)) for event in connected]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in connected)), 60)
    # The stalled reader talks to the ws process itself: behind nginx, the proxy's own buffers
    # would absorb its backlog first and the ws process would see the same stall later.
    reader, writer = await stalled_client(stack.ws_port, path, {"Authorization": f"Bearer {token}"})
    stalled_at = time.monotonic()
    stalled_closed_after = None
    while stalled_closed_after is None or not all(task.done() for task in healthy):
        closed = await asyncio.to_thread(ws_metric, stack, 'jobcast_ws_connections_closed_total{code="4408"}')
        if stalled_closed_after is None and closed >= 1:
            stalled_closed_after = time.monotonic() - stalled_at
        assert time.monotonic() - stalled_at < 60, ("the run did not end", closed, sum(task.done() for task in healthy))
        await asyncio.sleep(0.1)
    results = [task.result() for task in healthy]
    rss_after = rss_kib(pid)
    # The server dropped the stalled connection: reading again, it ends without a close handshake.
    backlog = await read_to_the_end(reader, timeout=STALLED_DROP_SECONDS + 3)
    writer.close()
    return {"results": results, "rss_before": rss_before, "rss_after": rss_after,
            "stalled_closed_after": stalled_closed_after, "backlog": backlog}


def test_a_stalled_reader_is_closed_and_slows_no_one_else(stack):
    dropped_before = ws_metric(stack, 'jobcast_ws_messages_dropped_total{reason="queue_full"}')
    run = asyncio.run(stall_beside_healthy_watchers(stack))
    latencies = sorted(latency for _, watcher_latencies in run["results"] for latency in watcher_latencies)
    for seqs, _ in run["results"]:
        assert seqs[-1] == BUSY_LINES + 2  # running, each line, succeeded
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a healthy watcher lost or repeated an event"
    p99, worst = latencies[int(len(latencies) * 0.99)], latencies[-1]
    growth = run["rss_after"] - run["rss_before"]
    print(f"\nlatency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms;"
          f" ws RSS {run['rss_before'] // 1024} -> {run['rss_after'] // 1024} MiB;"
          f" stalled socket closed after {run['stalled_closed_after']:.1f} s; backlog {len(run['backlog'])} bytes")
    assert p99 < LATENCY_P99_BOUND and worst < LATENCY_MAX_BOUND, (p99, worst)
    assert growth < RSS_GROWTH_BOUND_KIB, (run["rss_before"], run["rss_after"])
    # Its queue overflowed (the coalescing path: dropped for it alone, a resync marker instead),
    # then its send timed out: 4408 within the send timeout of its buffers filling.
    assert ws_metric(stack, 'jobcast_ws_messages_dropped_total{reason="queue_full"}') > dropped_before
    assert SEND_TIMEOUT <= run["stalled_closed_after"] < STALLED_CLOSE_BOUND
    assert run["backlog"].startswith(b"\x81")  # the frames it never read, then the end of the connection
    assert ws_metric(stack, 'jobcast_ws_connections_closed_total{code="4408"}') == 1
