"""ASGI entry point of the ws tier (uvicorn: jobcast.ws.asgi:application)."""

from jobcast import django_setup

django_setup()

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



def _combined():
    """HTTP to Django and /ws/ to the consumers in one app: `jobcast run`'s front door without nginx."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    # Without nginx, Django serves /static/ itself (fine for one developer, not for production).
    http = ASGIStaticFilesHandler(get_asgi_application())
    return ProtocolTypeRouter({"http": http, "websocket": application.application_mapping["websocket"]})


combined_application = _combined()
