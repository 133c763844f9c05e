"""The front page and the JSON error pages of the web tier (the other pages: jobcast.web.pages)."""

from __future__ import annotations

from django.shortcuts import redirect, render

from jobcast.errors import error_response


def index(request):
    """The front page: a signed-in user goes to their jobs; others see what jobcast is and how to sign in."""
    if request.user.is_authenticated:
        return redirect("jobs")
    return render(request, "jobcast/index.html")


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
