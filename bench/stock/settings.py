"""The stock setup the Channels tutorial and celery-progress teach, for comparison only."""

import os

SECRET_KEY = "bench-only"
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "bench.stock.asgi.application"
USE_TZ = True
REDIS_URL = os.environ["REDIS_URL"]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Defaults, but for the read timeout: redis-py 8's 5 s default kills idle
        # receives (the same fix jobcast needs; without it stock cannot hold idle sockets).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
    }
}
