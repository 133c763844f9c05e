"""Who is running a job right now: a lease in Redis that the running attempt keeps fresh (docs/workers.md).

A job's row says `running` from its start to its end, whether its worker is alive or not.
The lease tells the two apart: the attempt running it holds `jobcast:job:<id>:lease`
(value `host:pid:token`), renewed every third of JOBCAST_LEASE_SECONDS by a thread of its own, and
deleted at the end. So a second delivery of a job whose lease is alive elsewhere is a
duplicate (skipped), one whose lease lapsed (or whose holder on this host is dead) is a
job whose worker was lost (run again), and a reaper finds running jobs nobody holds.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from jobcast.conf import option
from jobcast.events.groups import lease_key
from jobcast.events.publisher import REDIS_DOWN
from jobcast.processes import process_alive
from jobcast.redis_client import get_redis

logger = logging.getLogger(__name__)


def lease_seconds() -> float:
    """How long a lease lasts unrenewed (JOBCAST_LEASE_SECONDS, 15 s by default).

    A worker that vanishes without a trace (its host gone) is noticed this long after its last
    renewal; a redelivered job waits at most this long for a lapsed lease to expire.
    """
    return option("LEASE_SECONDS")


class JobLease:
    """One attempt's hold on its job."""

    def __init__(self, job_id):
        self.key = lease_key(job_id)
        self.value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> None:
        """Hold the lease from now, renewing it until released (a failed write is retried by the renewals)."""
        self._write()
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew, name=f"lease-{self.key}", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Stop renewing and give the lease up (only if it is still this attempt's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            redis = get_redis()
            if redis.get(self.key) == self.value.encode():
                redis.delete(self.key)
        except REDIS_DOWN:
            pass  # it lapses by itself

    def held_by_me(self, value: bytes | None) -> bool:
        return value == self.value.encode()

    def _write(self) -> None:
        try:
            get_redis().set(self.key, self.value, px=int(lease_seconds() * 1000))
        except REDIS_DOWN:
            pass  # Redis is away: the next renewal writes it again

    def _renew(self) -> None:
        while not self._stop.wait(lease_seconds() / 3):
            self._write()


def _holder(value: bytes | None, mine: JobLease | None = None) -> str | None:
    """The live holder a lease value names: None when lapsed, mine, or its process on this host is gone."""
    if value is None or (mine is not None and mine.held_by_me(value)):
        return None
    host, pid, _ = value.decode().split(":", 2)
    if host == socket.gethostname() and not process_alive(int(pid)):
        return None
    return value.decode()


def lease_holder(job_id, mine: JobLease | None = None) -> str | None:
    """Who holds the job's lease: None when nobody alive does."""
    return _holder(get_redis().get(lease_key(job_id)), mine)


def unheld(job_ids) -> list:
    """Those of these jobs whose lease nobody alive holds (one round trip)."""
    pipe = get_redis().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.get(lease_key(job_id))
    return [job_id for job_id, value in zip(job_ids, pipe.execute()) if _holder(value) is None]


def wait_until_unheld(job_id, mine: JobLease | None = None, timeout: float | None = None) -> bool:
    """Wait (at most a lease's life) for the job's lease to lapse; False when it is still held (its attempt is alive elsewhere)."""
    life = lease_seconds()
    deadline = time.monotonic() + (life + 1 if timeout is None else timeout)
    while lease_holder(job_id, mine) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.5, life / 10))
    return True
