"""The Job row: identity, owner, params and the durable part of its state (docs/workers.md).

Progress and seq live in Redis while a job runs (no database write per event); the row
gets them at state changes and at most every few seconds, so it is never far behind.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from jobcast.jobs.states import State


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=100)
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=[(s.value, s.value) for s in State], default=State.QUEUED)
    progress = models.JSONField(default=dict)
    seq = models.PositiveBigIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at", "-id"], name="job_owner_newest"),
            models.Index(fields=["owner", "state", "-created_at"], name="job_owner_state"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_idempotency_key_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"
