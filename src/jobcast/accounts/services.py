"""Creating and checking API tokens and single-use WebSocket tickets."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model

from jobcast.accounts.models import ApiToken
from jobcast.events.groups import ticket_key
from jobcast.redis_client import get_redis

TOKEN_PREFIX = "jc_"


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(username: str, *, create_user: bool = False) -> str:
    """Create a new API token for `username` and return it (it is shown once, stored hashed)."""
    User = get_user_model()
    if create_user:
        user, _ = User.objects.get_or_create(username=username)
    else:
        user = User.objects.get(username=username)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(raw))
    return raw


def token_user(raw: str):
    """The active user a token belongs to, or None."""
    if not raw:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(raw)).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def _ticket_key(ticket: str) -> str:
    return ticket_key(_hash(ticket))


def ticket_create(user) -> tuple[str, int]:
    """A short-lived, single-use WebSocket ticket for `user`; returns (ticket, seconds to live)."""
    ttl = settings.JOBCAST["TICKET_TTL"]
    ticket = secrets.token_urlsafe(32)
    get_redis().set(_ticket_key(ticket), user.id, ex=ttl)
    return ticket, ttl


async def ticket_redeem(redis, ticket: str) -> int | None:
    """The user id a ticket was made for, consuming it (None when unknown, used or expired)."""
    if not ticket or len(ticket) > 200:
        return None
    value = await redis.getdel(_ticket_key(ticket))
    return int(value) if value else None
