"""HTTP side of the ws tier: /healthz (alive), /readyz (database and Redis answer, not draining), /metrics."""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async
from django.db import connection

from jobcast.metrics import render_latest
from jobcast.redis_client import get_async_redis
from jobcast.ws.limits import connections


async def _respond(send, status: int, body: dict | bytes, content_type: str = "application/json") -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@database_sync_to_async
def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def health_app(scope, receive, send):
    """A minimal ASGI app for the ws tier's operator endpoints."""
    path = scope["path"]
    if path == "/healthz":
        await _respond(send, 200, {"status": "ok"})
    elif path == "/readyz":
        if connections.draining:
            await _respond(send, 503, {"status": "draining", "checks": {}})
            return
        # Both are needed to admit a socket: the database authenticates it and finds its job.
        checks = {}
        try:
            await _ping_database()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await get_async_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        await _respond(send, 200 if ready else 503, {"status": "ok" if ready else "unavailable", "checks": checks})
    elif path == "/metrics":
        body, content_type = render_latest()
        await _respond(send, 200, body, content_type)
    else:
        await _respond(send, 404, {"detail": "Not found.", "errors": []})
