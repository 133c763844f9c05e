"""Handshake authentication: session cookie (with an Origin check), Bearer header, or ticket."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http.request import validate_host

from jobcast.accounts.services import ticket_redeem, token_user
from jobcast.redis_client import get_async_redis


def query_params(scope) -> dict[str, str]:
    """The handshake's query string as a dict of first values."""
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[0] for k, v in parsed.items()}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(scope) -> bool:
    """Whether the handshake's Origin is one of ALLOWED_HOSTS (a browser's cross-site guard)."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    host = urlsplit(origin).hostname
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


@database_sync_to_async
def _user_by_id(user_id: int):
    return get_user_model().objects.filter(id=user_id, is_active=True).first()


@database_sync_to_async
def _user_by_token(token: str):
    return token_user(token)


async def authenticate(scope):
    """The handshake's user, or None: ticket, then Bearer header, then the session cookie."""
    ticket = query_params(scope).get("ticket")
    if ticket:
        user_id = await ticket_redeem(get_async_redis(), ticket)
        return await _user_by_id(user_id) if user_id else None
    authorization = _header(scope, b"authorization") or ""
    if authorization.lower().startswith("bearer "):
        return await _user_by_token(authorization[7:].strip())
    session_user = scope.get("user")
    if session_user is not None and origin_allowed(scope):
        # Resolving the lazy session user touches the database once.
        user = await database_sync_to_async(lambda: session_user if session_user.is_authenticated else None)()
        return user
    return None
