"""The soak: hundreds of watchers and a steady stream of jobs through nginx for a set time
(bench/soak.py). Nothing is lost or duplicated, nothing answers 5xx, no tier logs an error,
and no tier's memory keeps growing.

Short in `make test` (SOAK_SECONDS=60, SOAK_WATCHERS=150); `make soak` runs it for 5 minutes
with 300 watchers and writes the report to SOAK_REPORT (docs/reliability.md, "Load and soak").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import LogTail, MiB, SoakSizes, access_statuses, growth_bound, log_problems, report, run_soak
from tests.e2e.conftest import start_stack

SIZES = SoakSizes(seconds=float(os.environ.get("SOAK_SECONDS", "60")),
                  watchers=int(os.environ.get("SOAK_WATCHERS", "150")),
                  watchers_per_job=int(os.environ.get("SOAK_WATCHERS_PER_JOB", "30")))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(SIZES.seconds + SIZES.job_timeout + 240)]


@pytest.fixture
def soak_stack(tmp_path):
    """A stack of its own (its logs and memory are the soak's alone), one pool process per job
    at a time, finished jobs' events kept for a quarter of the run (SoakSizes.history_ttl)."""
    stack, stop = start_stack(tmp_path / "stack", JOBCAST_FRONT_DOOR="nginx",
                              JOBCAST_WORKER_CONCURRENCY=str(SIZES.lanes), JOBCAST_HISTORY_TTL=str(SIZES.history_ttl))
    try:
        yield stack
    finally:
        stop()


async def test_a_soak_loses_nothing_answers_no_5xx_logs_no_error_and_memory_flattens(soak_stack, caplog):
    caplog.set_level("WARNING", logger="httpx")  # not a line per request in the captured log
    headers = {"Authorization": f"Bearer {soak_stack.token('soak')}"}
    nginx = soak_stack.data_dir / "nginx"
    access_log, error_logs = LogTail(nginx / "access.log"), [LogTail(soak_stack.log), LogTail(nginx / "error.log")]

    result = await run_soak(soak_stack.url, soak_stack.ws_url, headers, SIZES, soak_stack.process.pid)

    front_door = access_statuses(access_log)
    problems = log_problems(*error_logs)
    text = report(result, front_door, problems)
    print(f"\n{text}")
    if os.environ.get("SOAK_REPORT"):
        Path(os.environ["SOAK_REPORT"]).parent.mkdir(parents=True, exist_ok=True)
        Path(os.environ["SOAK_REPORT"]).write_text(text + "\n")

    # A steady stream: every lane got through several jobs, each watched by all its watchers to its end.
    assert len(result.jobs) >= 3 * SIZES.lanes, text
    assert result.submit_failures == 0 and set(result.http_statuses) <= {200, 201}, (result.http_statuses, text)
    assert all(job.state == "succeeded" for job in result.jobs), text
    for job in result.jobs:
        for watch in job.watches:
            # Every seq from the first snapshot's to the terminal event's, once each and in order.
            assert (watch.final_state, watch.final_seq) == ("succeeded", job.seq), (job.job_id, watch, text)
            assert watch.seqs == watch.expected and watch.resets == 0, (job.job_id, watch, text)
            assert watch.last_close == 1000 and not watch.handshake_statuses, (job.job_id, watch, text)
    # The whole front door: no 5xx to anyone, and as many socket upgrades as watches opened.
    assert not [status for status in front_door if status >= 500], text
    assert front_door[101] >= len(result.watches), text
    assert problems == [], "\n".join(problems[:20])
    # The memory curve flattens: growth over the second half stays within its bound per tier.
    middle, growth = result.rss_at(0.5), result.second_half_growth()
    for tier, grew in growth.items():
        assert middle[tier] > 0, (tier, text)
        assert grew <= growth_bound(middle[tier]), f"{tier} grew {grew / MiB:.1f} MiB over the second half\n{text}"
