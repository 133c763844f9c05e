"""Handshake authentication: ticket, product-signed token (`?token=`), Bearer header, or the session
cookie (with an Origin check).

The session is read here, once, rather than by Channels' Cookie/Session/Auth middleware
stack: that stack wraps every message the socket sends (a session check per event per
socket, a tenth of the ws process's CPU in bench B) and keeps a lazy session and user in
every socket's scope, for a stream that never writes to its session.
"""

from __future__ import annotations

import time
from importlib import import_module
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user as django_get_user
from django.contrib.auth import get_user_model
from django.http import parse_cookie
from django.http.request import validate_host

from jobcast.accounts.services import Ticket, ticket_redeem, token_lookup, tokens_still_usable, user_for_subject
from jobcast.accounts.stream_tokens import stream_token_verify
from jobcast.events.schema import StreamTokenClaims
from jobcast.redis_client import get_async_redis


def query_params(scope) -> dict[str, str]:
    """The handshake's query string as a dict of first values."""
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[0] for k, v in parsed.items()}


def header(scope, name: bytes) -> str | None:
    """A handshake header's value (latin-1), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(scope) -> bool:
    """Whether the handshake's Origin is one of ALLOWED_HOSTS (a browser's cross-site guard)."""
    origin = header(scope, b"origin")
    if not origin:
        return False
    host = urlsplit(origin).hostname
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


@database_sync_to_async
def _token(raw: str):
    token = token_lookup(raw)
    return token if token is not None and not token.service else None  # a service token only submits jobs


@database_sync_to_async
def _subject_user(subject: str):
    user = user_for_subject(subject)
    return user if user.is_active else None


@database_sync_to_async
def _ticket_holder(ticket: Ticket):
    """The ticket's user, if active, and its token while still usable (a revoked one admits nobody)."""
    if ticket.token_id is not None and not tokens_still_usable([ticket.token_id]):
        return None
    return get_user_model().objects.filter(id=ticket.user_id, is_active=True).first()


class _SessionOnly:
    """What django.contrib.auth.get_user reads of a request: its session."""

    def __init__(self, session_key: str):
        self.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)


@database_sync_to_async
def _user_by_session(session_key: str):
    # Django's own check: the session's user, backend and auth hash (a password change
    # logs the session out), with SECRET_KEY_FALLBACKS honoured.
    user = django_get_user(_SessionOnly(session_key))
    return user if user.is_authenticated else None


class Credential(NamedTuple):
    user: object
    token_id: int | None  # the API token the socket was opened with (directly or through a ticket)
    claims: StreamTokenClaims | None = None  # a product-signed token's: its expiry and the jobs it allows


async def authenticate(scope) -> Credential | None:
    """The handshake's user and token, or None: ticket, then a product-signed token, then Bearer
    header, then the session cookie."""
    params = query_params(scope)
    ticket = params.get("ticket")
    if ticket:
        redeemed = await ticket_redeem(get_async_redis(), ticket)
        user = await _ticket_holder(redeemed) if redeemed else None
        return Credential(user, redeemed.token_id) if user else None
    stream_token = params.get("token")
    if stream_token:
        claims = stream_token_verify(stream_token)
        user = await _subject_user(claims.sub) if claims else None
        return Credential(user, None, claims) if user else None
    authorization = header(scope, b"authorization") or ""
    if authorization.lower().startswith("bearer "):
        token = await _token(authorization[7:].strip())
        return Credential(token.user, token.id) if token else None
    session_key = parse_cookie(header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)
    if session_key and origin_allowed(scope):
        user = await _user_by_session(session_key)
        return Credential(user, None) if user else None
    return None


async def revoked(consumers) -> list:
    """The consumers whose socket was opened with an API token that has since been revoked or has
    expired, or with a product-signed token past its `exp`."""
    now = time.time()
    expired = [c for c in consumers if getattr(c, "claims", None) is not None and c.claims.exp <= now]
    with_tokens = [c for c in consumers if getattr(c, "token_id", None) is not None]
    if not with_tokens:
        return expired
    usable = await database_sync_to_async(tokens_still_usable)([c.token_id for c in with_tokens])
    return expired + [c for c in with_tokens if c.token_id not in usable]
