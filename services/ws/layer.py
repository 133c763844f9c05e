"""jobcast's channel layer: channels-redis's pub/sub layer with bounded, process-local socket queues.

Why the pub/sub layer rather than channels-redis's core layer (docs/events.md, measured in
docs/benchmarks.md): a group is one Redis pub/sub channel, so a published event reaches each
ws process once, over the one connection that process holds, and is handed to its watching
sockets in memory. The core layer instead pops every message with its own round trip and
wakes each receiving consumer through locks and helper tasks; in bench B that receive path
was a third of the ws process's CPU. Nothing is stored per member in Redis either, so sockets
that vanish leave nothing behind and no membership needs refreshing.

Four changes to the stock pub/sub layer, for jobcast's delivery rule and its speed:
- `group_add` returns once Redis has processed the process's SUBSCRIBE (a PING sent after
  it on the same connection has come back), so a socket that joins, then reads history,
  misses nothing in between; the stock layer returns as soon as the command is written.
- A socket's own channel lives only in its process (jobcast never sends to one socket from
  elsewhere), so opening a socket costs no SUBSCRIBE.
- `receive` hands a socket everything already queued for it as one `job.batch` message
  (the shape the publisher also uses for events it publishes together).
- Each socket's queue is bounded (`capacity`). When a slow socket's queue is full, new
  messages are dropped for it and one `job.resync` message is queued instead: the consumer
  then catches up from the job's history, or closes with 4408 when history no longer
  reaches back (services/ws/consumers.py). `nudge()` queues the same message on purpose.

And one for its resilience: the reader drops its connection after any error, so that a
SUBSCRIBE refused on a reconnect cannot leave it connected but deaf (`_do_receiving`).

`delivery_problem()` is the ws tier's readiness canary (jobcast.ws.health): a message
published to a pub/sub channel of this process's own must come back through the same
connection and reader that feed the sockets, so /readyz fails when Redis answers PING but
delivery has stopped.

Only the ws tier receives from groups, so the layer lives here; the publisher (any tier)
sends to the same groups with one Lua call (jobcast.events.publisher, publish.lua).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from channels.layers import channel_layers
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from jobcast.conf import option
from jobcast.events.groups import LAYER_PREFIX
from jobcast.metrics import DROPPED_QUEUE_FULL, ws_groups

logger = logging.getLogger(__name__)

RESYNC = {"type": "job.resync"}  # "you may have missed events: catch up from history"
# A socket that fell behind gets what is queued for it in one `job.batch` message of at most
# this many: one dispatch instead of one helper task and one wait per message in Channels'
# consumer loop (a sixth of the ws process's CPU in bench B).
MAX_BATCH = 64
CONFIRM_PING = b"jobcast-subscribed:"  # then the channel's name
# A SUBSCRIBE not confirmed in this time (Redis unreachable) is not waited for longer: the
# socket goes on, and the resync sweeper (jobcast.ws.resync) covers what it may miss.
CONFIRM_SECONDS = 5
RECONNECT_PAUSE_SECONDS = 1.0  # after a pub/sub connection failed, before it is used again (as channels-redis)
CANARY_TIMEOUT_SECONDS = 1.0  # a canary not back within this: the layer does not deliver (inside a 2 s probe timeout)
CANARY_CACHE_SECONDS = 3.0  # a canary's verdict answers the probes for this long (one round trip per window)


class SocketQueue(asyncio.Queue):
    """One socket's messages: at most `capacity`, then one resync marker until it is read."""

    def __init__(self, capacity: int, marker: bytes):
        super().__init__()
        self.capacity = capacity
        self.marker = marker
        self.marker_queued = False

    def put_nowait(self, item) -> None:
        if self.qsize() >= self.capacity:
            DROPPED_QUEUE_FULL.inc()
            self.queue_marker()
            return
        super().put_nowait(item)

    def queue_marker(self) -> None:
        """Queue the resync marker, unless one is already waiting to be read."""
        if not self.marker_queued:
            self.marker_queued = True
            super().put_nowait(self.marker)

    def _get(self):
        item = super()._get()
        if item is self.marker:
            self.marker_queued = False
        return item


class ConfirmedShardConnection(RedisSingleShardConnection):
    """A shard's pub/sub connection whose subscribe() waits until Redis has processed it.

    Each SUBSCRIBE is followed by a PING naming its channel on the same connection; its
    answer confirms that channel. Naming it (rather than counting answers) keeps a PING
    lost with a dropped connection from shifting every later confirmation.
    """

    def __init__(self, host, channel_layer):
        super().__init__(host, channel_layer)
        self._confirmed: dict[str, asyncio.Future] = {}  # channel -> done once subscribed

    async def subscribe(self, channel):
        async with self._lock:
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                self._ensure_redis()
                self._ensure_receiver()
                confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
                try:
                    await self._pubsub.subscribe(channel)
                    if channel not in self._subscribed_to:
                        self._subscribed_to.add(channel)
                        if not is_canary(channel):
                            ws_groups.inc()
                    await self._pubsub.ping(CONFIRM_PING + channel.encode())  # answered after the SUBSCRIBE
                except BaseException:
                    self._confirmed.pop(channel, None)  # the next subscribe() sends it again
                    raise
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_SECONDS)
        except TimeoutError:
            logger.warning("SUBSCRIBE %s not confirmed within %s s", channel, CONFIRM_SECONDS)

    async def unsubscribe(self, channel):
        async with self._lock:
            self._confirmed.pop(channel, None)
            if channel in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(channel)
                self._subscribed_to.remove(channel)
                if not is_canary(channel):
                    ws_groups.dec()

    async def flush(self):
        ws_groups.dec(len([channel for channel in self._subscribed_to if not is_canary(channel)]))
        await super().flush()
        self._confirmed.clear()

    async def _do_receiving(self):
        """channels-redis's reader loop, except that after any error the connection is dropped.

        redis-py reconnects by itself and subscribes again to every channel on the new
        connection; but when that SUBSCRIBE is refused (a Redis still loading, an ACL change),
        the connection stays up with no subscription, and the stock loop would read from it,
        deaf, forever while PING still answers. Dropped, the next read connects and
        subscribes again, until it works. Nothing but a cancellation ends this loop.
        """
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - the reader must outlive any Redis failure
                logger.warning("pub/sub connection failed (%s: %s); connecting again", type(exc).__name__, exc)
                await self._drop_connection()
                await asyncio.sleep(RECONNECT_PAUSE_SECONDS)

    async def _drop_connection(self) -> None:
        """Disconnect the pub/sub connection; the next read connects and subscribes to every channel again."""
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_result(None)  # its PING is lost; the reconnection subscribes it again
        connection = self._pubsub.connection if self._pubsub else None
        if connection is not None:
            try:
                await connection.disconnect()
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                logger.debug("disconnecting the pub/sub connection failed", exc_info=True)

    def _receive_message(self, message):
        if message is not None and message["type"] == "pong":
            data = message["data"]
            if data.startswith(CONFIRM_PING):
                confirmed = self._confirmed.get(data[len(CONFIRM_PING):].decode())
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            return
        super()._receive_message(message)


class JobcastLoopLayer(RedisPubSubLoopLayer):
    """The per-event-loop half of the layer: confirmed subscriptions, local bounded socket queues."""

    def __init__(self, *args, capacity: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [ConfirmedShardConnection(shard.host, self) for shard in self._shards]
        self.capacity = capacity
        self.resync_marker = self.channel_layer.serialize(RESYNC)
        self.canary = f"{self.prefix}{CANARY_INFIX}{uuid.uuid4().hex}"  # subscribed to by the first check
        self.canary_lock = asyncio.Lock()
        self.canary_checked_at = -CANARY_CACHE_SECONDS
        self.canary_problem: str | None = None

    async def _subscribe_to_channel(self, channel):
        # Called for new_channel(): the socket's channel is local, so no Redis SUBSCRIBE.
        self.channels[channel] = SocketQueue(self.capacity, self.resync_marker)

    async def receive(self, channel):
        """The socket's next message, or all that are queued (up to MAX_BATCH) as one `job.batch`."""
        message = await super().receive(channel)
        queue = self.channels.get(channel)
        if queue is None or queue.empty():
            return message
        messages = [message]
        while len(messages) < MAX_BATCH and not queue.empty():
            messages.append(self.channel_layer.deserialize(queue.get_nowait()))
        return {"type": "job.batch", "messages": messages}

    async def delivery_problem(self) -> str | None:
        """Why this process's layer does not deliver, or None when a canary came back (cached briefly)."""
        async with self.canary_lock:
            if time.monotonic() - self.canary_checked_at >= CANARY_CACHE_SECONDS:
                try:
                    async with asyncio.timeout(CANARY_TIMEOUT_SECONDS):
                        await self.canary_round_trip()
                    self.canary_problem = None
                except TimeoutError:
                    self.canary_problem = f"a canary message did not come back within {CANARY_TIMEOUT_SECONDS:g} s"
                except Exception as exc:  # noqa: BLE001 - any failure means no delivery
                    self.canary_problem = f"a canary message could not go round ({type(exc).__name__})"
                self.canary_checked_at = time.monotonic()
            return self.canary_problem

    async def canary_round_trip(self) -> None:
        """Publish a canary to this process's canary channel and wait until the pub/sub reader hands it back."""
        if self.canary not in self.channels:  # the first round, or the layer was flushed
            await self._get_shard(self.canary).subscribe(self.canary)
            self.channels[self.canary] = asyncio.Queue()  # only this check publishes to it, once per round
        queue = self.channels[self.canary]
        while not queue.empty():
            queue.get_nowait()  # the late answer of an earlier round
        nonce = uuid.uuid4().hex
        await self.send(self.canary, {"type": "canary", "nonce": nonce})
        while self.channel_layer.deserialize(await queue.get()).get("nonce") != nonce:
            pass

    def nudge(self, channel: str) -> None:
        """Tell one local socket to catch up from history (no-op for an unknown channel)."""
        queue = self.channels.get(channel)
        if queue is not None:
            queue.queue_marker()


CANARY_INFIX = "canary."


def is_canary(channel: str) -> bool:
    """Whether `channel` is a readiness canary's (not a group, so not counted in jobcast_ws_groups)."""
    return CANARY_INFIX in channel


def redis_host(url: str) -> dict:
    """The layer's connection settings for the Redis at `url`.

    redis-py 8 defaults to a 5 s socket timeout; the ws tier's pub/sub connection is
    quiet whenever no watched job publishes, so its read timeout is well above that
    (the layer polls with a 0.1 s timeout of its own).
    """
    return {"address": url, "socket_timeout": 30, "socket_connect_timeout": 5, "socket_keepalive": True}


_layers_url: str | None = None  # the Redis the layers made so far are on


@receiver(setting_changed)
def _follow_redis_url(setting, **kwargs):
    """A changed JOBCAST["REDIS_URL"] (a test's own server) gets layers on that Redis: Channels
    itself drops its cached layers only when CHANNEL_LAYERS changes."""
    if setting == "JOBCAST" and _layers_url is not None and option("REDIS_URL") != _layers_url:
        channel_layers.backends.clear()


class JobcastChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer whose loop layers are JobcastLoopLayer, on jobcast's REDIS_URL by default.

    Configured under its own alias, CHANNEL_LAYERS["jobcast"] (LAYER_ALIAS), with no CONFIG
    needed: the Redis is JOBCAST["REDIS_URL"] and each socket's queue holds at most
    JOBCAST["CHANNEL_CAPACITY"] messages unless CONFIG says otherwise.
    """

    def __init__(self, *args, hosts=None, capacity=None, prefix=LAYER_PREFIX, **kwargs):
        global _layers_url
        if prefix != LAYER_PREFIX:
            raise ImproperlyConfigured(f"jobcast's channel layer uses the prefix {LAYER_PREFIX!r} (its publisher's)")
        if hosts is None:
            _layers_url = option("REDIS_URL")
            hosts = [redis_host(_layers_url)]
        capacity = option("CHANNEL_CAPACITY") if capacity is None else capacity
        super().__init__(*args, hosts=hosts, prefix=prefix, capacity=capacity, **kwargs)

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = JobcastLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
