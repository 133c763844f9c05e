"""A Redis the stack does not own is stopped and started again, empty, while a job runs and
watchers follow it: every tier waits it out in place and each says so on /readyz meanwhile.

Unlike tests/e2e/test_redis_outage.py (where `jobcast run` restarts its own Redis at once),
the outage here lasts as long as the test wants, so it can watch every tier's readiness
during it, and the watchers are connected throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
import orjson
import pytest

from jobcast.cli.stack import free_port
from jobcast.client.watch import Backoff, JobWatch, ws_url_for
from tests.e2e.conftest import start_stack
from tests.support import start_redis, wait_until

pytestmark = [pytest.mark.e2e]

STEPS = 400
WATCHERS = 5
# Shorter than the ws tier's patience (two failed resync rounds, about 10 s): sockets stay
# open and get every event once Redis is back. Longer: they are closed with 1013 and resume.
SHORT_OUTAGE, LONG_OUTAGE = 6, 16


class RecordingWatch(JobWatch):
    """The library's resuming watcher, keeping every raw frame it was sent (duplicates too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, on_retry=lambda reason, delay: self.retries.append(reason), **kwargs)
        self.frames: list[dict] = []
        self.retries: list[str] = []

    def _accept(self, raw):
        self.frames.append(orjson.loads(raw))
        return super()._accept(raw)


async def follow(watch: RecordingWatch) -> None:
    async for _ in watch:
        pass


def readiness(urls: dict[str, str]) -> dict[str, int]:
    """Each tier's /readyz status (0 when it does not answer)."""
    statuses = {}
    for tier, url in urls.items():
        try:
            statuses[tier] = httpx.get(url, timeout=3).status_code
        except httpx.HTTPError:
            statuses[tier] = 0
    return statuses


@pytest.mark.parametrize("outage_seconds", [SHORT_OUTAGE, LONG_OUTAGE])
def test_every_tier_rides_out_a_redis_restart_in_place(tmp_path, outage_seconds):
    redis = start_redis(tmp_path / "redis")
    servers = [redis]
    worker_port = free_port()
    stack, stop = start_stack(tmp_path / "stack", JOBCAST_FRONT_DOOR="nginx", REDIS_URL=redis.url,
                              JOBCAST_WORKER_METRICS_PORT=str(worker_port))
    ready_urls = {"web": f"{stack.url}/readyz", "ws": f"http://127.0.0.1:{stack.ws_port}/readyz",
                  "worker": f"http://127.0.0.1:{worker_port}/readyz"}
    try:
        wait_until(lambda: set(readiness(ready_urls).values()) == {200}, 30, "every tier to be ready")
        tiers = stack.tier_processes()
        assert all(tiers.values()), tiers
        token = stack.token("e2e")
        with stack.client() as client:
            created = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": STEPS, "interval_ms": 25}})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]

        async def scenario():
            url = ws_url_for(stack.url, job_id)
            watches = [RecordingWatch(url, token, backoff=Backoff(initial=0.2, cap=2.0)) for _ in range(WATCHERS)]
            followers = [asyncio.create_task(follow(w)) for w in watches]
            with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
                await asyncio.to_thread(wait_until, lambda: client.get(f"/api/jobs/{job_id}/").json()["seq"] >= 30,
                                        30, "the job to publish 30 events")
                seq_before = client.get(f"/api/jobs/{job_id}/").json()["seq"]
                await asyncio.to_thread(redis.stop)
                outage_started = time.monotonic()
                seen_down: dict[str, int] = {}
                while time.monotonic() - outage_started < outage_seconds:
                    for tier, status in (await asyncio.to_thread(readiness, ready_urls)).items():
                        if status != 200:
                            seen_down.setdefault(tier, status)
                    submit = await asyncio.to_thread(client.post, "/api/jobs/", json={"kind": "demo.count", "params": {"steps": 1}})
                    assert submit.status_code == 503 and submit.headers["Retry-After"], submit.text
                    await asyncio.sleep(0.5)
                servers.append(await asyncio.to_thread(start_redis, tmp_path / "redis", redis.port))
                await asyncio.to_thread(wait_until, lambda: set(readiness(ready_urls).values()) == {200}, 60,
                                        "every tier to be ready again")
                await asyncio.wait_for(asyncio.gather(*followers), 120)
                final = client.get(f"/api/jobs/{job_id}/").json()
                # The worker still takes new jobs (its broker connection came back too).
                after = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 3, "interval_ms": 10}})
                assert after.status_code == 201, after.text
                await asyncio.to_thread(
                    wait_until, lambda: client.get(f"/api/jobs/{after.json()['id']}/").json()["state"] == "succeeded",
                    60, "a job submitted after the outage to succeed")
            return watches, seq_before, seen_down, final

        watches, seq_before, seen_down, final = asyncio.run(scenario())
        # Each tier said it was not ready while Redis was away (503, not a dead process)...
        assert seen_down == {"web": 503, "ws": 503, "worker": 503}, seen_down
        # ...and came back by itself: the same processes, none restarted by the supervisor.
        assert stack.tier_processes() == tiers
        assert b"exited with code" not in stack.log.read_bytes()

        # The job waited the outage out and finished; its numbering went on above what it had.
        assert final["state"] == "succeeded" and final["result"] == {"counted": STEPS}, final
        assert final["seq"] > seq_before
        frames_by_seq = defaultdict(set)
        for watch in watches:
            # What each watcher shows is the job's end, with every step counted.
            assert watch.final is not None and watch.final.state == "succeeded"
            assert watch.job is not None and watch.job.state == "succeeded" and watch.job.progress.current == STEPS
            events = [frame for frame in watch.frames if frame["type"] in ("progress", "log", "state")]
            for frame in events:
                frames_by_seq[frame["seq"]].add(orjson.dumps(frame, option=orjson.OPT_SORT_KEYS))
            snapshots = [frame for frame in watch.frames if frame["type"] == "snapshot"]
            if outage_seconds == SHORT_OUTAGE:
                # Never disconnected: one snapshot, then every later seq exactly once, in order.
                assert len(snapshots) == 1 and watch.retries == []
                first = snapshots[0]["job"]["seq"]
                assert [frame["seq"] for frame in events] == list(range(first + 1, final["seq"] + 1))
            else:
                # Closed with 1013 while Redis stayed away, it resumed with `after`; the job's
                # publisher held its events meanwhile, so the replay continues without a gap.
                assert any("1013" in reason for reason in watch.retries), watch.retries
                first = snapshots[0]["job"]["seq"]
                handed_out = sorted({frame["seq"] for frame in events})
                assert handed_out == list(range(first + 1, final["seq"] + 1)) or any(s.get("reset") for s in snapshots[1:])
        # A seq is never given to two different events, though Redis came back empty.
        reused = {seq: frames for seq, frames in frames_by_seq.items() if len(frames) > 1}
        assert reused == {}, reused
        assert max(frames_by_seq) == final["seq"]
    finally:
        stop()
        for server in servers:
            server.stop()
