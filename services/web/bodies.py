"""Request bodies sent without a Content-Length (`Transfer-Encoding: chunked`) under WSGI.

Django's WSGIRequest reads at most CONTENT_LENGTH bytes of a body, and none when the
header is absent, so behind gunicorn a chunked body reached the views empty: a valid
submit was a 400 "Field required" and an oversized one never met the 413 check. This
wrapper around the WSGI application reads such a body first, at most
JOBCAST_MAX_BODY_BYTES + 1 bytes of it, and hands Django a Content-Length: a body within
the limit is served as if it had declared its length, a larger one is refused by
BodySizeLimitMiddleware with the same JSON 413 as a declared oversized body.

nginx, the front door, de-chunks bodies itself (and applies `client_max_body_size`);
this covers clients that reach gunicorn directly. Under ASGI (`jobcast run`'s uvicorn
front door) Django buffers the body and raises RequestDataTooBig itself, which
jobcast.web.api renders as the JSON 413.
"""

from __future__ import annotations

import io

from jobcast.conf import option

READ_SIZE = 65536


def _read_at_most(stream, limit: int) -> bytes:
    parts, left = [], limit
    while left > 0:
        part = stream.read(min(READ_SIZE, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class ChunkedBodies:
    """WSGI middleware: give a chunked request body a Content-Length, reading no more than the limit + 1."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        # wsgi.input_terminated: the server ends the stream at the body's end (gunicorn
        # does), so reading it to the end cannot block on the next request.
        if chunked and not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input_terminated"):
            body = _read_at_most(environ["wsgi.input"], option("MAX_BODY_BYTES") + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
