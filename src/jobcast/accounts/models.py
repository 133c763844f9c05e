"""API tokens: only a SHA-256 of each token is stored, so a database leak leaks no token.

A token can be given an expiry and be revoked; `prefix` (the first characters after `jc_`)
names it in listings without revealing it (docs/cli.md, `jobcast token`). A *service* token is a
product backend's: it may only submit jobs on behalf of a user the product names by its `sub`
(docs/protocol.md, "Product-signed tokens"), which `SubjectUser` maps to a jobcast user.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    service = models.BooleanField(default=False)  # may only POST /api/jobs/ on behalf of a `sub`

    def __str__(self) -> str:
        return f"token {self.prefix or self.id} of {self.user}"

    @property
    def usable(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class SubjectUser(models.Model):
    """A product's user, by the `sub` its backend signs stream tokens for, and the jobcast user it maps to.

    Made on first use; the user's username is derived from the subject, but the link is this row,
    so a local user whose name happens to match a subject never receives its jobs.
    """

    subject = models.CharField(max_length=255, unique=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobcast_subject")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"subject {self.subject!r} -> {self.user}"
