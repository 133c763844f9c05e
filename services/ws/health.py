"""HTTP side of the ws tier: /healthz (alive) and /readyz (Redis answers), nothing else."""

from __future__ import annotations

import orjson

from jobcast.redis_client import get_async_redis
from jobcast.ws.limits import connections


async def _respond(send, status: int, body: dict) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def health_app(scope, receive, send):
    """A minimal ASGI app for the ws tier's health endpoints."""
    path = scope["path"]
    if path == "/healthz":
        await _respond(send, 200, {"status": "ok"})
    elif path == "/readyz":
        if connections.draining:
            await _respond(send, 503, {"status": "draining", "checks": {}})
            return
        try:
            await get_async_redis().ping()
            await _respond(send, 200, {"status": "ok", "checks": {"redis": "ok"}})
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            await _respond(send, 503, {"status": "unavailable", "checks": {"redis": f"error: {type(exc).__name__}"}})
    else:
        await _respond(send, 404, {"detail": "Not found.", "errors": []})
