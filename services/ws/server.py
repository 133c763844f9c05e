"""The ws tier's server: uvicorn, with a graceful drain on SIGTERM (docs/deploy.md).

On the first SIGTERM (or Ctrl-C) the process
1. turns /readyz to 503 and refuses new sockets with 1012, so load balancers move on;
2. closes its open sockets with 1012 ("server restarting: reconnect with after=") in
   batches spread over JOBCAST_WS_DRAIN_SECONDS, so the surviving instances get a
   steady trickle of reconnects instead of a storm;
3. then shuts uvicorn down as usual, giving what is still open at most
   JOBCAST_WS_SHUTDOWN_GRACE_SECONDS before its tasks are cancelled.
A second signal skips what is left of the drain.

Run as `python -m jobcast.ws.server` (what `jobcast run ws` execs).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math

import uvicorn

from django.conf import settings

from jobcast import django_setup, use_settings
from jobcast.conf import option
from jobcast.events.schema import CloseCode
from jobcast.health import watch_redis_at_start
from jobcast.logs import set_tier, tier_logging
from jobcast.ws.limits import connections
from jobcast.ws.protocol import JobcastWebSocketProtocol

logger = logging.getLogger("jobcast.ws.drain")

DRAIN_STEP_SECONDS = 0.25  # one batch of closes per step


async def drain_sockets(window: float, step: float = DRAIN_STEP_SECONDS) -> None:
    """Refuse new sockets and close the open ones with 1012, spread evenly over `window` seconds."""
    connections.draining = True
    consumers = list(connections.consumers)
    # At most one batch per `step`; with fewer sockets than steps, one socket per batch.
    # The batches are spread evenly: batch k closes at k * window / batches.
    steps = max(1, math.ceil(window / step)) if window > 0 else 1
    batch = max(1, math.ceil(len(consumers) / steps))
    batches = max(1, math.ceil(len(consumers) / batch))
    interval = window / batches
    logger.info("draining %d sockets over %.1f s (%d per %.2f s)", len(consumers), window, batch, interval)
    for start in range(0, len(consumers), batch):
        for consumer in consumers[start : start + batch]:
            try:
                await consumer.close(code=CloseCode.SERVER_RESTARTING)
            except Exception:  # noqa: BLE001 - a socket that is already gone needs no closing
                logger.debug("socket already closed", exc_info=True)
        if start + batch < len(consumers):
            await asyncio.sleep(interval)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal drains sockets before the usual shutdown."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float):
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.drain_requested = False
        self.drain_task: asyncio.Task | None = None

    def handle_exit(self, sig, frame) -> None:
        if self.drain_requested:
            return super().handle_exit(sig, frame)  # second signal: shut down now
        self._captured_signals.append(sig)
        self.drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self.drain_task is None:
            self.drain_task = asyncio.get_running_loop().create_task(drain_sockets(self.drain_seconds))
        if self.drain_task is not None and self.drain_task.done():
            return True
        return await super().on_tick(counter)


def make_config(argv: list[str] | None = None) -> uvicorn.Config:
    """uvicorn's settings for the ws tier (or, with --app, the combined front-door app).

    The ws tier serves the settings' ASGI_APPLICATION (jobcast's own, `jobcast.ws.asgi`, or a
    product's router that includes jobcast's routes, docs/integration.md), with the tier's
    operator endpoints in front of it for HTTP.
    """
    use_settings()
    parser = argparse.ArgumentParser(prog="jobcast-ws")
    parser.add_argument("--app", default=None, help="an ASGI app as module:attribute (default: ASGI_APPLICATION)")
    parser.add_argument("--host", default=option("BIND"))
    parser.add_argument("--port", type=int, default=option("WS_PORT"))
    args = parser.parse_args(argv)
    set_tier("ws" if args.app is None else "frontdoor")
    return uvicorn.Config(
        args.app or _ws_application,
        factory=args.app is None,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws=JobcastWebSocketProtocol,
        ws_max_size=65536,  # frames over 64 KiB close the socket with 1009 (the contract's limit)
        # Events are small JSON; per-message deflate cost a zlib state per socket and a
        # compression per event per socket (16 % of the ws process's CPU in bench B).
        ws_per_message_deflate=False,
        ws_ping_interval=option("WS_PING_INTERVAL"),
        ws_ping_timeout=option("WS_PING_INTERVAL"),
        lifespan="off",
        access_log=False,
        proxy_headers=True,
        # nginx's X-Forwarded-For/-Proto are trusted from these (JOBCAST_FORWARDED_ALLOW_IPS).
        forwarded_allow_ips=option("FORWARDED_ALLOW_IPS"),
        # After the drain: how long connections and their tasks still get before they are
        # cancelled (a socket whose close handshake hangs, a consumer stuck in a query).
        timeout_graceful_shutdown=option("WS_SHUTDOWN_GRACE_SECONDS"),
        log_level=option("LOG_LEVEL"),
        log_config=tier_logging(),  # jobcast's format for uvicorn's lines too (jobcast.logs)
    )


def _ws_application():
    """The settings' ASGI_APPLICATION, its HTTP side answered by the ws tier's operator endpoints."""
    django_setup("ws")
    from django.utils.module_loading import import_string

    from jobcast.ws.health import with_operator_endpoints

    return with_operator_endpoints(import_string(settings.ASGI_APPLICATION))


def main(argv: list[str] | None = None) -> None:
    """Serve until drained: exits within JOBCAST_WS_DRAIN_SECONDS + JOBCAST_WS_SHUTDOWN_GRACE_SECONDS of SIGTERM."""
    config = make_config(argv)
    watch_redis_at_start()  # a line if Redis cannot be reached; the tier keeps trying, /readyz 503 meanwhile
    DrainingServer(config, option("WS_DRAIN_SECONDS")).run()


if __name__ == "__main__":
    main()
