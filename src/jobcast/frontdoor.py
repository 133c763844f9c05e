"""`jobcast run`'s front door without nginx: Django's HTTP and the ws tier's sockets in one ASGI app.

For one developer's machine only (nginx gives the production routing, docs/cli.md). The ws
tier's application is named by the ASGI_APPLICATION setting, as Django names its entry
points, so the core imports no tier and the ws process itself never loads the web tier's
middleware.
"""

from jobcast import django_setup

django_setup("frontdoor")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

# Without nginx, Django serves /static/ itself (fine for one developer, not for production).
application = ProtocolTypeRouter(
    {"http": ASGIStaticFilesHandler(get_asgi_application()), "websocket": import_string(settings.ASGI_APPLICATION)}
)
