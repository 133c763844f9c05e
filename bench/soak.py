"""The soak (tests/e2e/test_soak.py, `make soak`): hundreds of watchers and a steady stream of
jobs through the front door of a running stack for a set time, with RSS sampled per tier.

`lanes` jobs run at a time: each lane submits a `demo.count` job with `POST /api/jobs/`,
opens `watchers_per_job` sockets on it, waits until every one has seen the job's end, reads
the job once more over HTTP, and submits the next, until the time is up. A watcher resumes
with `?after=<last seq>` whenever its socket closes before the terminal event (docs/protocol.md,
close codes), and records every seq it got, so the caller can check each run for gaps and
duplicates. Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.loadgen import MAX_RECONNECTS, record_frame, terminal_of, with_after
from bench.systems import cmdline, descendants, rss_bytes

MiB = 2**20
# Which process belongs to which tier, by a piece of its command line (`jobcast run`'s children).
TIERS = {"nginx": "nginx:", "web": "gunicorn", "ws": "jobcast.ws.server", "worker": "celery", "redis": "redis-server"}
# What "flattens" means: over the second half of the run a tier's RSS may grow by at most
# this much plus this share of its RSS at the half (allocator noise, caches filling up). A
# leak of a few hundred bytes per event or a few kB per socket or job grows past it.
GROWTH_BOUND_BYTES = 24 * MiB
GROWTH_BOUND_SHARE = 0.10
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)|\[(error|crit|alert|emerg)\]")
ACCESS_STATUS = re.compile(r'" (\d{3}) ')


@dataclass
class SoakSizes:
    seconds: float
    watchers: int
    watchers_per_job: int = 30
    steps: int = 30
    interval_ms: int = 200
    log_every: int = 10
    job_timeout: float = 120  # from a job's submission to its last watcher's close

    @property
    def lanes(self) -> int:
        """Jobs that run at once (the stack's worker needs this many pool processes)."""
        return max(1, self.watchers // self.watchers_per_job)

    @property
    def history_ttl(self) -> int:
        """JOBCAST_HISTORY_TTL for the soak's stack: a quarter of the run, so that Redis, which
        keeps a finished job's events that long (24 h by default), levels off in the first half."""
        return max(10, int(self.seconds / 4))

    @property
    def sample_seconds(self) -> float:
        """About 60 RSS samples per run, at least a second apart."""
        return max(1.0, self.seconds / 60)


@dataclass
class Watch:
    """What one watcher of one job received."""

    base: int | None = None  # the first snapshot's job.seq
    last: int = 0  # the seq to resume after
    seqs: list[int] = field(default_factory=list)
    final_state: str | None = None
    final_seq: int | None = None
    last_close: int | None = None
    reconnects: int = 0
    resets: int = 0
    handshake_statuses: Counter = field(default_factory=Counter)

    @property
    def expected(self) -> list[int]:
        """The seqs a watcher must have received: every one after its first snapshot's, up to the end."""
        return list(range((self.base or 0) + 1, (self.final_seq or 0) + 1))

    @property
    def lost(self) -> int:
        return len(set(self.expected) - set(self.seqs))

    @property
    def duplicated(self) -> int:
        return len(self.seqs) - len(set(self.seqs))


@dataclass
class JobRun:
    job_id: str
    state: str | None  # from GET /api/jobs/{id}/ after its watchers were done
    seq: int | None
    watches: list[Watch]


@dataclass
class SoakResult:
    sizes: SoakSizes
    jobs: list[JobRun] = field(default_factory=list)
    http_statuses: Counter = field(default_factory=Counter)
    submit_failures: int = 0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # (seconds, RSS bytes per tier)
    seconds: float = 0.0

    @property
    def watches(self) -> list[Watch]:
        return [watch for job in self.jobs for watch in job.watches]

    def rss_at(self, share: float, window: float = 0.05) -> dict[str, int]:
        """Median RSS per tier over the samples within `window` of `share` of the run (0: before the load)."""
        if share == 0:
            return self.samples[0][1]
        end = self.samples[-1][0]
        near = [rss for t, rss in self.samples if abs(t - share * end) <= window * end] or [
            min(self.samples, key=lambda sample: abs(sample[0] - share * end))[1]]
        return {tier: int(statistics.median(rss[tier] for rss in near)) for tier in TIERS}

    def second_half_growth(self) -> dict[str, int]:
        """RSS growth per tier from the middle of the run to its end (last 10 % against 45-55 %)."""
        middle, end = self.rss_at(0.5), self.rss_at(0.95)
        return {tier: end[tier] - middle[tier] for tier in TIERS}


def growth_bound(rss_at_half: int) -> int:
    """How much a tier's RSS may grow over the second half of a run."""
    return int(GROWTH_BOUND_BYTES + GROWTH_BOUND_SHARE * rss_at_half)


def tier_rss(root_pid: int) -> dict[str, int]:
    """RSS (VmRSS, bytes) of each tier's processes under `root_pid`, summed per tier."""
    pids = {tier: [] for tier in TIERS}
    for pid in descendants(root_pid):
        line = cmdline(pid)
        tier = next((tier for tier, marker in TIERS.items() if marker in line), None)
        if tier:
            pids[tier].append(pid)
    return {tier: rss_bytes(found) for tier, found in pids.items()}


async def follow(url: str, headers: dict, deadline: float) -> Watch:
    """Watch one job to its end, resuming with `after` after any close before the terminal event."""
    watch = Watch()
    while watch.final_state is None and watch.reconnects <= MAX_RECONNECTS and time.monotonic() < deadline:
        target = url if watch.base is None else with_after(url, watch.last)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                async with connect(target, additional_headers=headers, open_timeout=30, ping_interval=None,
                                   max_queue=None) as ws:
                    try:
                        async for raw in ws:
                            receive(watch, json.loads(raw))
                    finally:
                        watch.last_close = ws.close_code
        except InvalidStatus as exc:
            watch.handshake_statuses[exc.response.status_code] += 1
        except (ConnectionClosed, OSError, TimeoutError):
            pass
        if watch.final_state is None:
            watch.reconnects += 1
            await asyncio.sleep(0.2 * min(watch.reconnects, 10))
    return watch


def receive(watch: Watch, message: dict) -> None:
    """Record one server message of a job's socket."""
    record_frame(watch, message)
    end = terminal_of(message)
    if end:
        watch.final_state, watch.final_seq = end


async def run_soak(url: str, ws_url: str, headers: dict, sizes: SoakSizes, stack_pid: int) -> SoakResult:
    """Drive the stack at `url` for `sizes.seconds`, sampling RSS of the tiers under `stack_pid`."""
    result = SoakResult(sizes)
    started = time.monotonic()
    stop_at = started + sizes.seconds
    params = {"steps": sizes.steps, "interval_ms": sizes.interval_ms, "log_every": sizes.log_every}

    async def lane(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            response = await http.post("/api/jobs/", json={"kind": "demo.count", "params": params})
            result.http_statuses[response.status_code] += 1
            if response.status_code != 201:
                result.submit_failures += 1
                await asyncio.sleep(1)
                continue
            job_id = response.json()["id"]
            deadline = time.monotonic() + sizes.job_timeout
            watches = await asyncio.gather(*(follow(f"{ws_url}/ws/jobs/{job_id}/", headers, deadline)
                                              for _ in range(sizes.watchers_per_job)))
            answer = await http.get(f"/api/jobs/{job_id}/")
            result.http_statuses[answer.status_code] += 1
            job = answer.json() if answer.status_code == 200 else {}
            result.jobs.append(JobRun(job_id, job.get("state"), job.get("seq"), list(watches)))

    async def sample() -> None:
        while True:
            result.samples.append((time.monotonic() - started, tier_rss(stack_pid)))
            if time.monotonic() >= stop_at:
                return
            await asyncio.sleep(min(sizes.sample_seconds, max(0.0, stop_at - time.monotonic())))

    limits = httpx.Limits(max_connections=sizes.lanes)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as http:
        await asyncio.gather(sample(), *(lane(http) for _ in range(sizes.lanes)))
    result.seconds = time.monotonic() - started
    return result


class LogTail:
    """The lines a log file gets from now on (what the soak's own run wrote, not the start-up's)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[str]:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").splitlines()


def log_problems(*logs: LogTail) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks in the tiers' log and nginx's error log."""
    return [f"{log.path.name}: {line}" for log in logs for line in log.lines() if LOG_PROBLEM.search(line)]


def access_statuses(access_log: LogTail) -> Counter:
    """HTTP statuses of every request in nginx's access log (101 for a WebSocket)."""
    return Counter(int(match.group(1)) for line in access_log.lines() if (match := ACCESS_STATUS.search(line)))


def report(result: SoakResult, front_door: Counter, problems: list[str]) -> str:
    """A short plain-text report of a soak run."""
    sizes, watches = result.sizes, result.watches
    states = Counter(job.state for job in result.jobs)
    five_xx = sum(n for status, n in front_door.items() if status >= 500)
    lines = [
        f"jobcast soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {sizes.watchers} watchers "
        f"({sizes.lanes} jobs at a time x {sizes.watchers_per_job}) for {sizes.seconds:.0f} s "
        f"(ran {result.seconds:.0f} s); demo.count {sizes.steps} steps x {sizes.interval_ms} ms, a log every {sizes.log_every}; "
        f"JOBCAST_HISTORY_TTL {sizes.history_ttl} s",
        f"jobs: {len(result.jobs)} ({', '.join(f'{n} {s}' for s, n in states.items())}); "
        f"submissions refused: {result.submit_failures}",
        f"events delivered: {sum(len(w.seqs) for w in watches)} to {len(watches)} watches; "
        f"lost {sum(w.lost for w in watches)}, duplicated {sum(w.duplicated for w in watches)}, "
        f"reset snapshots {sum(w.resets for w in watches)}, reconnects {sum(w.reconnects for w in watches)}",
        f"front door (nginx access log): {sum(front_door.values())} requests, 5xx {five_xx}; "
        + ", ".join(f"{status}: {n}" for status, n in sorted(front_door.items())),
        f"ERROR/CRITICAL lines and tracebacks in the logs: {len(problems)}",
        "RSS MiB      start    25%    50%    75%    end   growth 2nd half (bound)",
    ]
    curve = [result.rss_at(share) for share in (0, 0.25, 0.5, 0.75, 0.95)]
    growth = result.second_half_growth()
    for tier in TIERS:
        row = "".join(f"{point[tier] / MiB:7.1f}" for point in curve)
        lines.append(f"{tier:<10}{row}   {growth[tier] / MiB:+7.1f} ({growth_bound(curve[2][tier]) / MiB:.0f})")
    return "\n".join(lines)
