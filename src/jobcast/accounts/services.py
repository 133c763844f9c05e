"""Creating, checking, listing and revoking API tokens; single-use WebSocket tickets; the users of
a product's `sub` (service tokens and product-signed stream tokens, jobcast.accounts.stream_tokens).

Users are found by the user model's USERNAME_FIELD (a product's custom user model works, docs/integration.md).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import NamedTuple

from jobcast.conf import option
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from jobcast.accounts.models import ApiToken, SubjectUser
from jobcast.events.groups import ticket_key
from jobcast.redis_client import get_redis

TOKEN_PREFIX = "jc_"
SHOWN_CHARS = 8  # of a token after its `jc_`, kept to name it in listings (not enough to guess it)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def user_get(username: str, *, create: bool = False):
    """The user whose USERNAME_FIELD is `username` (User.DoesNotExist), made without a password when
    `create` (a custom user model with other required fields needs them given: create it yourself)."""
    User = get_user_model()
    lookup = {User.USERNAME_FIELD: username}
    if not create:
        return User._default_manager.get(**lookup)
    user = User._default_manager.filter(**lookup).first()
    if user is None:
        user = User(**lookup)
        user.set_unusable_password()
        user.save()
    return user


def token_create(username: str, *, create_user: bool = False, expires_at: datetime | None = None,
                 service: bool = False) -> str:
    """Create a new API token for `username` and return it (it is shown once, stored hashed).

    A `service` token may only submit jobs on behalf of a product's users (docs/protocol.md).
    """
    user = user_get(username, create=create_user)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(raw), prefix=raw[len(TOKEN_PREFIX):][:SHOWN_CHARS],
                            expires_at=expires_at, service=service)
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
    if username:
        tokens = tokens.filter(**{f"user__{get_user_model().USERNAME_FIELD}": username})
    return list(tokens)


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


SUBJECT_USERNAME_PREFIX = "sub-"


def user_for_subject(subject: str):
    """The jobcast user a product's `sub` maps to, made (without a password, never staff) on first use."""
    link = SubjectUser.objects.select_related("user").filter(subject=subject).first()
    if link is not None:
        return link.user
    User = get_user_model()
    name = SUBJECT_USERNAME_PREFIX + subject
    field = User._meta.get_field(User.USERNAME_FIELD)
    if len(name) > (field.max_length or 150) or User._default_manager.filter(**{User.USERNAME_FIELD: name}).exists():
        name = SUBJECT_USERNAME_PREFIX + hashlib.sha256(subject.encode()).hexdigest()[:40]
    try:
        with transaction.atomic():
            user = User(**{User.USERNAME_FIELD: name})
            user.set_unusable_password()
            user.save()
            SubjectUser.objects.create(subject=subject, user=user)
            return user
    except IntegrityError:  # made meanwhile by another request for the same subject
        return SubjectUser.objects.select_related("user").get(subject=subject).user


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
    ttl = option("TICKET_TTL")
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
