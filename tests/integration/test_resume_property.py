"""Resume, in the style of Zulip's `verify_action`: a snapshot at seq N plus the events after N is a fresh snapshot.

Random runs of a job go through the real lifecycle services and the one publisher against real
Redis and the database. After every step a fresh snapshot is taken exactly as the ws tier builds
one (the row overlaid with Redis's live state); then, for every pair of snapshots, the earlier one
with the stored events between them folded in (`JobDocument.apply`, what a client does) must be
the later one, field for field — all but `attempts`: the contract's events do not carry it (a
client learns it from a snapshot or the REST job; docs/protocol.md says so).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from jobcast.events.history import read_history, read_live
from jobcast.events.schema import JobError, LogEvent, Progress, ProgressEvent, parse_event
from jobcast.jobs import services
from jobcast.jobs.documents import job_document
from jobcast.jobs.models import Job
from jobcast.jobs.states import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

progress_step = st.tuples(
    st.just("progress"),
    st.integers(0, 1000),
    st.one_of(st.none(), st.integers(1, 1000)),
    st.one_of(st.none(), st.text(max_size=12)),
)
log_step = st.tuples(st.just("log"), st.text(max_size=20))
NOT_IN_EVENTS = {"attempts"}
endings = st.sampled_from(["succeeded", "failed", "cancelled", "cancelled while queued", "still running"])


def fresh_snapshot(job_id):
    """What a socket connecting now without `after` is sent (jobcast.ws.consumers.send_snapshot)."""
    from jobcast.redis_client import get_redis

    row = Job.objects.get(id=job_id)
    (live,) = read_live(get_redis(), [row.id])
    return job_document(row, live)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(progress_step, log_step), max_size=10), ending=endings, row_sync=st.booleans())
def test_a_snapshot_plus_the_events_after_it_is_a_fresh_snapshot(user, redis, monkeypatch, steps, ending, row_sync):
    # The row copy of progress every publish, or never before the end: the snapshot must not care.
    monkeypatch.setattr(services, "DB_PROGRESS_INTERVAL", 0.0 if row_sync else 1e9)
    job, _ = services.job_submit(user, "demo.count", {"steps": 1})
    snapshots = [fresh_snapshot(job.id)]
    if ending == "cancelled while queued":
        services.job_request_cancel(job)
        snapshots.append(fresh_snapshot(job.id))
    else:
        run = services.job_start(job.id)
        snapshots.append(fresh_snapshot(job.id))
        for step in steps:
            if step[0] == "progress":
                _, current, total, message = step
                event = ProgressEvent(job_id=str(job.id), ts=1.0, **Progress.of(current, total, message).model_dump())
            else:
                event = LogEvent(job_id=str(job.id), ts=1.0, message=step[1])
            run.publisher.publish_one(event)
            snapshots.append(fresh_snapshot(job.id))
        if ending != "still running":
            error = JobError(type="Boom", message="it broke") if ending == "failed" else None
            result = {"ok": len(steps)} if ending == "succeeded" else None
            assert services.job_finish(run, State(ending), result=result, error=error)
            snapshots.append(fresh_snapshot(job.id))
        run.lease.release()

    events = [parse_event(stored.text) for stored in read_history(redis, job.id, 0).events]
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    for i, earlier in enumerate(snapshots):
        for later in snapshots[i:]:
            folded = earlier
            for event in events:
                if earlier.seq < event.seq <= later.seq:
                    folded = folded.apply(event)
            assert folded.model_dump(mode="json", exclude=NOT_IN_EVENTS) == later.model_dump(
                mode="json", exclude=NOT_IN_EVENTS), (i, ending)
    if ending not in ("still running",):
        assert snapshots[-1].state == ending.split()[0]
