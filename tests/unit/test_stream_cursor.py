"""The delivery rule of one job's stream, without sockets: jobcast.ws.stream.StreamCursor."""

from __future__ import annotations

from jobcast.events.history import History, LiveState, StoredEvent
from jobcast.ws.stream import StreamCursor, Verdict


def stored(seq: int, terminal: bool = False) -> StoredEvent:
    kind = "state" if terminal else "progress"
    return StoredEvent(seq, kind, f'{{"seq":{seq}}}', terminal)


def history(after: int, seqs: list[int], complete: bool = True, terminal_at: int | None = None) -> History:
    events = [stored(seq, seq == terminal_at) for seq in seqs]
    return History(events, complete, events[-1].seq if events else after)


def live(seq: int, state: str | None = "running") -> LiveState:
    return LiveState(seq, None, {"state": state} if state else None)


def test_live_events_are_sent_in_order_and_duplicates_skipped():
    cursor = StreamCursor()
    cursor.sent_snapshot(3, "running")
    assert cursor.verdict(3) is Verdict.SKIP and cursor.verdict(2) is Verdict.SKIP
    assert cursor.verdict(4) is Verdict.SEND
    cursor.sent(4, terminal=False)
    assert cursor.verdict(6) is Verdict.GAP  # 5 must come from history first
    assert cursor.last_seq == 4 and not cursor.finished


def test_the_terminal_event_finishes_the_stream():
    cursor = StreamCursor()
    cursor.sent(1, terminal=False)
    cursor.sent(2, terminal=True)
    assert cursor.finished
    assert cursor.verdict(3) is Verdict.SKIP  # nothing after the end


def test_a_snapshot_of_an_ended_job_finishes_the_stream():
    cursor = StreamCursor()
    cursor.sent_snapshot(7, "failed")
    assert cursor.finished and cursor.last_seq == 7


def test_unsent_skips_what_was_sent_and_stops_after_the_terminal_event():
    cursor = StreamCursor()
    cursor.sent(2, terminal=False)
    events = [stored(1), stored(2), stored(3), stored(4, terminal=True), stored(5)]
    assert [e.seq for e in cursor.unsent(events)] == [3, 4]
    assert cursor.finished and cursor.last_seq == 4
    assert list(cursor.unsent([stored(6)])) == []


def test_replay_sends_the_stored_events_after_n():
    cursor = StreamCursor()
    plan = cursor.replay(2, history(2, [3, 4, 5]), live(5), row_seq=1, row_state="running")
    assert not plan.reset and [e.seq for e in plan.events] == [3, 4, 5] and not plan.finish
    assert cursor.last_seq == 2  # the events are not sent yet
    assert [e.seq for e in cursor.unsent(plan.events)] == [3, 4, 5]


def test_replay_after_trimmed_history_is_a_reset():
    cursor = StreamCursor()
    assert cursor.replay(0, history(0, [5, 6], complete=False), live(6), 0, "running").reset


def test_replay_beyond_the_latest_seq_is_a_reset():
    # The client's state is from somewhere else (another job, or a Redis that lost everything).
    cursor = StreamCursor()
    assert cursor.replay(50, history(50, []), live(10), row_seq=10, row_state="running").reset
    assert not StreamCursor().replay(10, history(10, []), live(10), row_seq=10, row_state="running").reset


def test_replay_of_an_ended_job_whose_terminal_event_is_in_history():
    cursor = StreamCursor()
    plan = cursor.replay(3, history(3, [4, 5], terminal_at=5), live(5, "succeeded"), row_seq=5, row_state="succeeded")
    assert [e.seq for e in cursor.unsent(plan.events)] == [4, 5] and cursor.finished


def test_replay_of_an_ended_job_whose_terminal_event_is_not_published_yet_waits_for_it():
    # The row is written before the terminal event: Redis still shows the job running.
    cursor = StreamCursor()
    plan = cursor.replay(5, history(5, []), live(5, "running"), row_seq=5, row_state="succeeded")
    assert not plan.reset and not plan.finish and not cursor.finished


def test_replay_of_an_ended_job_the_client_has_seen_to_the_end_closes():
    cursor = StreamCursor()
    plan = cursor.replay(6, history(6, []), live(6, "cancelled"), row_seq=6, row_state="cancelled")
    assert plan.finish and plan.events == []


def test_replay_of_an_ended_job_whose_history_expired_closes():
    plan = StreamCursor().replay(6, history(6, []), None, row_seq=6, row_state="failed")
    assert plan.finish
