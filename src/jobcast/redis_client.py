"""The process's Redis clients, for the Redis that option("REDIS_URL") names (docs/events.md).

One sync client (publisher, history, tickets, rate limits) per process and one asyncio
client per event loop (the ws tier). They are looked up by URL at each call, so pointing
option("REDIS_URL") elsewhere (a test's own server) is all it takes to move every user.
redis-py's pool notices a fork and reconnects in the child, so Celery's prefork children
and gunicorn's workers never share a socket with their parent.
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio
from jobcast.conf import option

_sync_clients: dict[str, redis.Redis] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]]" = (
    weakref.WeakKeyDictionary()
)


def get_redis() -> redis.Redis:
    """The shared sync Redis client of this process (bytes in, bytes out)."""
    url = option("REDIS_URL")
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = redis.Redis.from_url(url, health_check_interval=30, socket_keepalive=True)
    return client


def get_async_redis() -> "redis.asyncio.Redis":
    """The asyncio Redis client of the running event loop (the ws tier runs one loop per process)."""
    url = option("REDIS_URL")
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        # A blocking pool makes a handshake storm wait for a connection instead of failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=64, timeout=30)
        client = clients[url] = redis.asyncio.Redis(connection_pool=pool)
    return client
