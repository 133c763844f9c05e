"""WSGI entry point of the web tier (gunicorn: jobcast.web.wsgi:application)."""

from jobcast import django_setup

django_setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

from jobcast.web.bodies import ChunkedBodies  # noqa: E402

# Chunked request bodies get a Content-Length first, so Django reads them (jobcast.web.bodies).
application = ChunkedBodies(get_wsgi_application())
