"""Refuse oversized request bodies with the contract's JSON 413 before anything reads them."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over JOBCAST_MAX_BODY_BYTES (chunked bodies: see api.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.JOBCAST["MAX_BODY_BYTES"]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                {"detail": f"Request body too large: at most {limit} bytes.", "errors": []}, status=413
            )
        return self.get_response(request)
