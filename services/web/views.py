"""Non-API views of the web tier: the front page and JSON error pages."""

from __future__ import annotations

from django.http import HttpResponse

from jobcast.errors import error_response

INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>jobcast</title></head>
<body><h1>jobcast</h1><p>Background jobs with live progress.</p>
<ul><li><a href="/accounts/login/">Log in</a> (a browser session for /api/ and /ws/)</li>
<li><a href="/api/docs/">API documentation</a></li><li><a href="/api/schema/">OpenAPI schema</a></li></ul>
</body></html>"""


def index(request):
    """The front page."""
    return HttpResponse(INDEX)


def not_found(request, exception=None):
    """404 as the contract's JSON body."""
    return error_response(404, "Not found.")


def server_error(request):
    """500 as JSON, never a traceback."""
    return error_response(500, "Internal server error.")


def bad_request(request, exception=None):
    """400 as JSON."""
    return error_response(400, "Bad request.")


def csrf_failure(request, reason=""):
    """403 as JSON when a session request lacks its CSRF token."""
    return error_response(403, f"CSRF check failed: {reason}")
