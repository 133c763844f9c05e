"""The stock setup the Channels tutorial and celery-progress teach, for comparison only (bench/)."""

import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.stock.urls"
ASGI_APPLICATION = "bench.stock.asgi.application"
USE_TZ = True
REDIS_URL = os.environ["REDIS_URL"]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels-redis's defaults (capacity 100, expiry 60, group_expiry 86400), but for the
        # read timeout: redis-py's 5 s socket timeout would end idle receives; the tutorial's
        # `"hosts": [("127.0.0.1", 6379)]` is the same layer otherwise.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
    }
}
