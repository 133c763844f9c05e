"""WSGI entry point of the web tier (gunicorn: jobcast.web.wsgi:application)."""

from jobcast import django_setup

django_setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
