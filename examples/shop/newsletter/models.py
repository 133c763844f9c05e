"""The product's own data, which its job kind reads and writes."""

from django.conf import settings
from django.db import models


class Subscriber(models.Model):
    """Someone on a customer's mailing list."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscribers")
    email = models.EmailField()
    last_subject = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.email


class Campaign(models.Model):
    """One newsletter sent (or being sent) by a customer: the jobcast job that sends it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="campaigns")
    subject = models.CharField(max_length=200)
    job_id = models.UUIDField(null=True, blank=True)
    sent = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
