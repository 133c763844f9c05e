"""The worker tier: Celery workers that run jobs and publish their events (docs/workers.md)."""
