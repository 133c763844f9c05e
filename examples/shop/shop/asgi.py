"""The product's ASGI application: its own HTTP, and jobcast's WebSocket routes under /jobcast/.

`jobcast run ws --settings shop.settings` serves this (ASGI_APPLICATION) with the ws tier's
operator endpoints in front; sockets open at /jobcast/ws/jobs/<id>/.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from jobcast.ws.routing import websocket_urlpatterns as jobcast_websockets  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_http,
    "websocket": URLRouter([path("jobcast/", URLRouter(jobcast_websockets))]),
})
