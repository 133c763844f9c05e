"""Creating, checking, listing and revoking API tokens; single-use WebSocket tickets."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from jobcast.accounts.models import ApiToken
from jobcast.events.groups import ticket_key
from jobcast.redis_client import get_redis

TOKEN_PREFIX = "jc_"
SHOWN_CHARS = 8  # of a token after its `jc_`, kept to name it in listings (not enough to guess it)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(username: str, *, create_user: bool = False, expires_at: datetime | None = None) -> str:
    """Create a new API token for `username` and return it (it is shown once, stored hashed)."""
    User = get_user_model()
    if create_user:
        user, _ = User.objects.get_or_create(username=username)
    else:
        user = User.objects.get(username=username)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(raw), prefix=raw[len(TOKEN_PREFIX):][:SHOWN_CHARS],
                            expires_at=expires_at)
    return raw


def _usable() -> Q:
    return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def token_lookup(raw: str) -> ApiToken | None:
    """The usable token (not revoked, not expired, its user active) with this value, or None."""
    if not raw or len(raw) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(_usable(), key_hash=_hash(raw), user__is_active=True).first()


def token_user(raw: str):
    """The active user a usable token belongs to, or None."""
    token = token_lookup(raw)
    return token.user if token is not None else None


def token_list(username: str | None = None) -> list[ApiToken]:
    """Every token (of one user, or of all), newest first."""
    tokens = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
    return list(tokens.filter(user__username=username) if username else tokens)


def token_revoke(reference: str) -> ApiToken:
    """Revoke the token with this id or prefix (or whole value); ApiToken.DoesNotExist when none, ValueError when several."""
    if reference.isdigit() and len(reference) < SHOWN_CHARS:
        matches = ApiToken.objects.filter(id=int(reference))
    else:
        prefix = reference.removeprefix(TOKEN_PREFIX)[:SHOWN_CHARS]
        matches = ApiToken.objects.filter(Q(prefix=prefix) | Q(key_hash=_hash(reference)))
    found = list(matches[:2])
    if not found:
        raise ApiToken.DoesNotExist(f"no token {reference!r}")
    if len(found) > 1:
        raise ValueError(f"{reference!r} names more than one token: use its id")
    token = found[0]
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def tokens_still_usable(token_ids) -> set[int]:
    """Which of these tokens may still be used (for sockets opened with them)."""
    return set(ApiToken.objects.filter(_usable(), id__in=set(token_ids), user__is_active=True).values_list("id", flat=True))


class Ticket(NamedTuple):
    user_id: int
    token_id: int | None  # the API token the ticket was asked for with (None: a session)


def _ticket_key(ticket: str) -> str:
    return ticket_key(_hash(ticket))


def ticket_create(user, token_id: int | None = None) -> tuple[str, int]:
    """A short-lived, single-use WebSocket ticket for `user`; returns (ticket, seconds to live)."""
    ttl = settings.JOBCAST["TICKET_TTL"]
    ticket = secrets.token_urlsafe(32)
    get_redis().set(_ticket_key(ticket), f"{user.id}:{token_id or ''}", ex=ttl)
    return ticket, ttl


async def ticket_redeem(redis, ticket: str) -> Ticket | None:
    """Whom a ticket was made for, consuming it (None when unknown, used or expired)."""
    if not ticket or len(ticket) > 200:
        return None
    value = await redis.getdel(_ticket_key(ticket))
    if not value:
        return None
    user_id, _, token_id = value.decode().partition(":")
    return Ticket(int(user_id), int(token_id) if token_id else None)
