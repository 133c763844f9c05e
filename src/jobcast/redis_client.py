"""The process's Redis connections: one sync pool (publisher, history, tickets) per process.

redis-py's pool notices a fork and reconnects in the child, so Celery's prefork
children and gunicorn's workers never share a socket with their parent.
"""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio
from django.conf import settings


@functools.lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The shared sync Redis client of this process (bytes in, bytes out)."""
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30, socket_keepalive=True)


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]" = weakref.WeakKeyDictionary()


def get_async_redis() -> "redis.asyncio.Redis":
    """The asyncio Redis client of the running event loop (the ws tier runs one loop per process)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A blocking pool makes a handshake storm wait for a connection instead of failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(settings.REDIS_URL, max_connections=64, timeout=30)
        client = redis.asyncio.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client
