"""jobcast's Celery broker transport: kombu's Redis transport, except when Redis is lost.

Selected by Celery's `broker_transport` setting (jobcast.jobs.queue); the broker URL stays
REDIS_URL. It changes one thing: what happens to a connection Celery gives up after a
connection error (Redis restarted, stopped, or a socket cut) while jobs are running.

Celery's consumer then calls `connection.collect()` and `connection.close()`. With kombu's
Redis transport both close the channels, and closing a channel puts its unacknowledged
messages back on the queue, which cannot work: Redis is away. Worse, when a BRPOP was
waiting (a free pool slot), the first close fails before marking the channel closed and
`collect()` drops the transport's client, so the second close tries again, meets that
missing client and raises AttributeError, which Celery does not ignore: the worker stops
with "Unrecoverable error" once its running jobs end (celery 5.7.0, kombu 5.7.0;
docs/reliability.md). Putting messages back at that moment is also not what jobcast wants:
their jobs are still running in this worker, which waits the outage out.

So this transport implements kombu's `_collect` hook (what `collect()` calls instead of
closing): each channel lets go of its sockets without a word to Redis and is left alone by
the later close. Its messages stay unacknowledged in Redis (if Redis kept them) and in the
channel, which keeps its connection pool: when a job ends after the reconnect, its ack (or
its reject at a worker shutdown, which hands the job back) reaches Redis through a new
connection of that pool; once none of its messages waits, the channel lets go of the pool.
A worker that dies first leaves the message to Redis's visibility timeout and the job to the
recovery check (services/worker/recovery.py). At a worker shutdown (no connection loss)
channels close as in kombu and hand their messages back.
"""

from __future__ import annotations

from kombu.transport import redis


class QoS(redis.QoS):
    """kombu's Redis QoS; a settled message may let its collected channel go."""

    def ack(self, delivery_tag):
        super().ack(delivery_tag)
        self.channel.release_if_settled()

    def reject(self, delivery_tag, requeue=False):
        super().reject(delivery_tag, requeue=requeue)
        self.channel.release_if_settled()


class Channel(redis.Channel):
    """A Redis channel that can be let go of without talking to Redis (see the module doc)."""

    QoS = QoS
    collected = False

    def collect(self) -> None:
        """Drop this channel's sockets after a lost connection; keep its messages and its pool for their acks."""
        self.collected = self.closed = self._closing = True
        self._in_poll = None  # the BRPOP's reply will never come on this socket
        self.connection.cycle.discard(self)
        self._close_clients()  # the BRPOP and pub/sub clients: this channel consumes no more
        if self._async_pool is not None:
            self._async_pool.disconnect()
            self._async_pool = None
        if self._pool is not None:
            # Its sockets are dead; the pool opens new ones for the next ack or reject.
            self._pool.disconnect()
        self.release_if_settled()

    def release_if_settled(self) -> None:
        """Once a collected channel has no message left to ack or reject, close its pool and drop its QoS' exit hook."""
        if not self.collected:
            return
        if self._qos is not None:
            self._qos._flush()  # forget the messages acked or rejected since
            if self._qos._delivered:
                return
            self._qos.restore_unacked_once()  # nothing to restore: only cancels kombu's exit hook
        self._disconnect_pools()

    def close(self) -> None:
        if not self.collected:
            super().close()


class Transport(redis.Transport):
    """kombu's Redis transport with channels that survive a lost connection (see the module doc)."""

    Channel = Channel

    def _collect(self, connection) -> None:
        for channel in (*self.channels, *self._avail_channels):
            channel.collect()
        self.cycle.close()
