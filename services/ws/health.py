"""HTTP side of the ws tier: /healthz (alive), /readyz (Redis answers, not draining), /metrics."""

from __future__ import annotations

import orjson

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


async def health_app(scope, receive, send):
    """A minimal ASGI app for the ws tier's operator endpoints."""
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
    elif path == "/metrics":
        body, content_type = render_latest()
        await _respond(send, 200, body, content_type)
    else:
        await _respond(send, 404, {"detail": "Not found.", "errors": []})
