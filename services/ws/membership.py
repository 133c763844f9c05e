"""Keep long-lived sockets in their groups.

channels-redis forgets a group member after `group_expiry` (a day here), so a dashboard
left open longer would silently stop receiving events. One task per ws process re-adds
every open socket's memberships at a quarter of that interval.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from django.conf import settings

from jobcast.ws.limits import connections

logger = logging.getLogger(__name__)

_refreshers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def refresh_interval() -> float:
    """Seconds between refreshes: a quarter of the layer's group expiry."""
    return settings.CHANNEL_LAYERS["default"]["CONFIG"].get("group_expiry", 86400) / 4


async def refresh_memberships(layer) -> None:
    """Re-add every open socket to its groups, forever, every refresh_interval()."""
    while True:
        await asyncio.sleep(refresh_interval())
        for consumer in list(connections.consumers):
            for group in consumer.groups:
                try:
                    await layer.group_add(group, consumer.channel_name)
                except Exception:  # noqa: BLE001 - try again at the next round
                    logger.warning("could not refresh %s in %s", consumer.channel_name, group, exc_info=True)


def ensure_refresher(layer) -> None:
    """Start this event loop's refresher once."""
    loop = asyncio.get_running_loop()
    task = _refreshers.get(loop)
    if task is None or task.done():
        _refreshers[loop] = loop.create_task(refresh_memberships(layer))
