"""Non-API views of the web tier: the front page and JSON error pages."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse

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
    return JsonResponse({"detail": "Not found.", "errors": []}, status=404)


def server_error(request):
    """500 as JSON, never a traceback."""
    return JsonResponse({"detail": "Internal server error.", "errors": []}, status=500)


def bad_request(request, exception=None):
    """400 as JSON."""
    return JsonResponse({"detail": "Bad request.", "errors": []}, status=400)


def csrf_failure(request, reason=""):
    """403 as JSON when a session request lacks its CSRF token."""
    return JsonResponse({"detail": f"CSRF check failed: {reason}", "errors": []}, status=403)
