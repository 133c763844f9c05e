"""HTTP side of the ws tier: /healthz (alive), /readyz (database and Redis answer, the channel
layer delivers, not draining), /metrics.

Redis answering PING does not prove that this process still receives what is published (a
pub/sub connection gone deaf after a failover, a dead reader): /readyz also checks that a
canary message went round through the layer (jobcast.ws.layer, `delivery_problem`), at most
once every few seconds however often it is probed.
"""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from jobcast.errors import error_body
from jobcast.events.groups import LAYER_ALIAS
from jobcast.health import ALIVE, check_database, check_redis, readiness
from jobcast.metrics import render_latest
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


class DeliveryFailed(Exception):
    """The channel layer did not deliver a canary message (the reason is ours, so it is shown)."""

    public_detail = True


async def delivery_check():
    """A readiness check (sync, as `readiness` runs them) that fails when the layer's canary did not come back."""
    problem = await get_channel_layer(LAYER_ALIAS).delivery_problem()

    def check_delivery() -> None:
        if problem is not None:
            raise DeliveryFailed(problem)

    return check_delivery


async def health_app(scope, receive, send):
    """A minimal ASGI app for the ws tier's operator endpoints."""
    path = scope["path"]
    if path == "/healthz":
        await _respond(send, 200, ALIVE)
    elif path == "/readyz":
        if connections.draining:
            await _respond(send, 503, {"status": "draining", "checks": {}})
            return
        # All are needed to serve a socket: the database authenticates it and finds its job,
        # Redis holds its history, and the layer brings its live events.
        checks = {"database": check_database, "redis": check_redis, "delivery": await delivery_check()}
        status, body = await database_sync_to_async(readiness)(checks)
        await _respond(send, status, body)
    elif path == "/metrics":
        body, content_type = render_latest()
        await _respond(send, 200, body, content_type)
    else:
        await _respond(send, 404, error_body("Not found."))


OPERATOR_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def with_operator_endpoints(app):
    """`app` (jobcast's ws application, or a product's router including jobcast's routes) with the
    ws tier's /healthz, /readyz and /metrics answering HTTP in front of it."""

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"] in OPERATOR_PATHS:
            return await health_app(scope, receive, send)
        return await app(scope, receive, send)

    return application
