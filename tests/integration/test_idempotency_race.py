"""Two submissions with the same Idempotency-Key at the same moment (docs/protocol.md, "HTTP API").

Both requests pass the "key already used?" lookup before either has inserted, so the
database's unique constraint decides: one creates the job (201), the other's INSERT fails
and it returns the job the first made (200). Real threads, real connections, real commits.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.db import IntegrityError, connection
from django.test import Client

from jobcast.jobs import services
from jobcast.jobs.models import Job
from jobcast.jobs.queue import QUEUE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_two_racing_submissions_with_one_key_get_one_job(token, user, redis, monkeypatch):
    # Hold each request between its lookup and its INSERT until both have looked: the race,
    # every time instead of now and then. On PostgreSQL both INSERTs then run at once (the
    # second blocks on the unique index until the first commits). pytest-django's SQLite
    # test database is in memory with a shared cache, where a second writer gets "database
    # table is locked" at once instead of waiting on the busy timeout as the real file
    # database does; there the second INSERT waits until the first request has answered.
    both_looked = threading.Barrier(2, timeout=10)
    first_answered = threading.Event()
    rate_check = services.check_submit_rate
    stagger = connection.vendor == "sqlite"

    def rate_check_then_wait(user_id):
        rate_check(user_id)
        if both_looked.wait() == 1 and stagger:
            assert first_answered.wait(timeout=10)

    monkeypatch.setattr(services, "check_submit_rate", rate_check_then_wait)

    # Count the INSERTs that lost to the constraint (the branch under test).
    lost = []
    create = Job.objects.create

    def counting_create(**fields):
        try:
            return create(**fields)
        except IntegrityError:
            lost.append(fields["idempotency_key"])
            raise

    monkeypatch.setattr(Job.objects, "create", counting_create)

    responses, failures = [], []

    def submit():
        try:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
            body = {"kind": "demo.count", "params": {"steps": 3}}
            responses.append(client.post("/api/jobs/", data=json.dumps(body), content_type="application/json",
                                         headers={"Idempotency-Key": "pay-7"}))
            first_answered.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not failures, failures
    assert sorted(r.status_code for r in responses) == [200, 201], [r.content for r in responses]
    bodies = [r.json() for r in responses]
    assert bodies[0]["id"] == bodies[1]["id"]
    assert lost == ["pay-7"]
    assert Job.objects.filter(owner=user).count() == 1
    # Only the request that created the job enqueued it.
    assert redis.llen(QUEUE) == 1
