"""ASGI entry point of the ws tier (uvicorn: jobcast.ws.asgi:application): sockets, and its operator endpoints."""

from jobcast import django_setup

django_setup("ws")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from jobcast.ws.health import health_app  # noqa: E402
from jobcast.ws.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": health_app,
        # No session middleware: jobcast.ws.auth reads the session cookie itself, once.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
