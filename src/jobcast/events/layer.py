"""jobcast's channel layer: channels-redis's core layer with a pool that waits instead of failing.

redis-py's asyncio pool holds at most 100 connections and raises "Too many connections"
beyond them; a storm of handshakes or disconnects (1,000 sockets at once) then fails its
`group_add`/`group_discard` calls, leaving refused sockets and stale group members. A
blocking pool queues those calls for a free connection instead (bench F shows the
difference).
"""

from __future__ import annotations

import redis.asyncio
from channels_redis.core import RedisChannelLayer

POOL_CONNECTIONS = 100  # per ws process and Redis host
POOL_WAIT_SECONDS = 30  # how long a call waits for a connection before it fails


class JobcastChannelLayer(RedisChannelLayer):
    """RedisChannelLayer whose connection pools block when exhausted."""

    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        return redis.asyncio.BlockingConnectionPool.from_url(
            address, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **host
        )
