"""The soak's own checks (bench/soak.py) catch what they are there to catch: a gap, a
duplicate, a reset, an error line, a 5xx, a tier whose memory keeps growing."""

from __future__ import annotations

from pathlib import Path

from bench.soak import MiB, TIERS, LogTail, SoakResult, SoakSizes, Watch, access_statuses, growth_bound, log_problems, receive


def event(seq: int, state: str | None = None) -> dict:
    if state:
        return {"type": "state", "seq": seq, "state": state}
    return {"type": "progress", "seq": seq}


def snapshot(seq: int, state: str = "running", reset: bool = False) -> dict:
    return {"type": "snapshot", "job": {"seq": seq, "state": state}, "reset": reset}


def test_a_watch_counts_gaps_duplicates_and_resets():
    watch = Watch()
    for message in [snapshot(3), event(4), event(5), event(5), event(7), snapshot(7, reset=True), event(8, "succeeded")]:
        receive(watch, message)
    assert (watch.base, watch.final_state, watch.final_seq, watch.last) == (3, "succeeded", 8, 8)
    assert watch.expected == [4, 5, 6, 7, 8] and watch.seqs != watch.expected
    assert (watch.lost, watch.duplicated, watch.resets) == (1, 1, 1)


def test_a_clean_watch_matches_its_expected_run():
    watch = Watch()
    for message in [snapshot(0, "queued"), event(1, "running"), event(2), event(3, "succeeded")]:
        receive(watch, message)
    assert watch.seqs == watch.expected == [1, 2, 3] and (watch.lost, watch.duplicated) == (0, 0)


def test_error_lines_tracebacks_and_5xx_are_found_after_the_mark(tmp_path: Path):
    log, access = tmp_path / "stack.log", tmp_path / "access.log"
    log.write_text("2026-12-04 01:59:34,880 ERROR   web    jobcast.api before the soak\n")
    access.write_text('127.0.0.1 - [04/Dec/2026:02:00:00 +0000] "GET /readyz HTTP/1.1" 502 150 0.001 "-" r1\n')
    log_tail, access_tail = LogTail(log), LogTail(access)
    with open(log, "a") as out:
        out.write("2026-12-04 01:59:34,880 INFO    web    gunicorn.error Booting worker with pid: 1\n"
                  "2026-12-04 01:59:35,950 WARNING worker py.warnings a warning is not an error\n"
                  "2026-12-04 01:59:36,000 ERROR   ws     jobcast.ws boom\n"
                  "Traceback (most recent call last):\n"
                  '2026/12/04 02:00:01 [error] 12#12: *3 connect() failed (111: Connection refused)\n')
    with open(access, "a") as out:
        out.write('127.0.0.1 - [04/Dec/2026:02:00:01 +0000] "GET /ws/jobs/x/ HTTP/1.1" 101 40 6.0 "-" r2\n'
                  '127.0.0.1 - [04/Dec/2026:02:00:02 +0000] "POST /api/jobs/ HTTP/1.1" 503 60 0.002 "-" r3\n')

    assert len(log_problems(log_tail)) == 3
    assert access_statuses(access_tail) == {101: 1, 503: 1}


def curve(growth_per_sample: int, samples: int = 60) -> SoakResult:
    result = SoakResult(SoakSizes(seconds=samples, watchers=1))
    result.samples = [(float(t), {tier: 100 * MiB + t * growth_per_sample for tier in TIERS}) for t in range(samples)]
    return result


def test_a_steady_climb_over_the_second_half_is_past_the_bound_and_a_plateau_is_not():
    leaking, flat = curve(2 * MiB), curve(0)
    assert all(grew > growth_bound(leaking.rss_at(0.5)[tier]) for tier, grew in leaking.second_half_growth().items())
    assert all(grew == 0 for grew in flat.second_half_growth().values())
    assert flat.rss_at(0) == flat.samples[0][1]
