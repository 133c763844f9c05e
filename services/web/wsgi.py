"""WSGI entry point of the web tier (gunicorn: jobcast.web.wsgi:application)."""

from jobcast import django_setup

django_setup("web")

from django.core.wsgi import get_wsgi_application  # noqa: E402

from jobcast.jobs.registry import all_kinds  # noqa: E402
from jobcast.metrics import prebind_kinds  # noqa: E402
from jobcast.web.bodies import ChunkedBodies  # noqa: E402

prebind_kinds(kind.name for kind in all_kinds())  # per-kind series at 0 from the start

# Chunked request bodies get a Content-Length first, so Django reads them (jobcast.web.bodies).
application = ChunkedBodies(get_wsgi_application())
