"""Logging of every tier: one line per event, JSON in production, plain text if asked (docs/operations.md).

`JOBCAST_LOG_FORMAT=json` (the default) writes each record as one JSON object per line
(python-json-logger) with `time`, `level`, `logger`, `message`, the process's `tier` and,
where known, the `request_id` and `job_id` it concerns; `text` writes the same as a
readable line (what `jobcast run` uses for its local stack). The servers' own loggers
(gunicorn, uvicorn, Celery) are configured with the same dictionary (`logging_config`), so
their lines come out in the same shape.

Every line, whatever its format, passes through `redact` last: API tokens (`jc_…`), ticket
and token query parameters, Bearer credentials, session cookies, passwords in URLs and the
SECRET_KEY are replaced by `[redacted]` wherever they appear (message, arguments, extras,
tracebacks).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from pythonjsonlogger.json import JsonFormatter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobcast_request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobcast_job_id", default=None)

_tier = "jobcast"

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REDACTED = "[redacted]"
_SECRETS = [
    (re.compile(r"\bjc_[A-Za-z0-9_-]+"), "jc_" + REDACTED),
    (re.compile(r"(?i)\b(ticket|token|access_token|api_key|password)=[^&\s\"'<>\\]+"), r"\1=" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b(sessionid|csrftoken)=[^;\s\"'<>\\]+"), r"\1=" + REDACTED),
    (re.compile(r"(?i)(\"?(?:authorization|cookie)\"?\s*[:=]\s*\"?)[^\"\n,}\\]+"), r"\1" + REDACTED),
    (re.compile(r"(\w+://[^:/@\s\"\\]*:)[^@/\s\"\\]+@"), r"\1" + REDACTED + "@"),  # password in a URL
]


def set_tier(name: str) -> None:
    """Name this process's tier in its log lines (each entry point calls it before logging starts)."""
    global _tier
    _tier = name


def current_request_id() -> str | None:
    return request_id_var.get()


def clean_request_id(value: str | None) -> str:
    """The request id to use: the proxy's X-Request-ID when it is a sane token, else a new one."""
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def redact(text: str) -> str:
    """`text` with every credential jobcast knows the shape of replaced by [redacted]."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    secret_key = _secret_key()
    if secret_key and secret_key in text:
        text = text.replace(secret_key, REDACTED)
    return text


def _secret_key() -> str | None:
    try:
        from django.conf import settings

        key = settings.SECRET_KEY
    except Exception:  # noqa: BLE001 - before settings exist there is no key to hide
        return None
    return key if key and len(key) >= 16 else None


class ContextFilter(logging.Filter):
    """Adds `tier`, `request_id` and `job_id` (None when unknown) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.tier = _tier
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get()
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line; unknown context left out; credentials redacted."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        kwargs.setdefault("json_default", str)
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s %(tier)s", *args, **kwargs)

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value:
                log_data[key] = value
            else:
                log_data.pop(key, None)
        # Django's request logging passes the request object: its path is already in the message.
        log_data.pop("request", None)

    def formatTime(self, record, datefmt=None) -> str:  # noqa: N802 - logging's name
        from datetime import datetime, timezone

        return datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextFormatter(logging.Formatter):
    """A readable line: time, level, tier, logger, [request and job], message; credentials redacted."""

    def __init__(self, *args, **kwargs):
        super().__init__("%(asctime)s %(levelname)-7s %(tier)-6s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"request={record.request_id}" if getattr(record, "request_id", None) else "",
                 f"job={record.job_id}" if getattr(record, "job_id", None) else ""]
        context = " ".join(part for part in parts if part)
        record.context = f" [{context}]" if context else ""
        if not hasattr(record, "tier"):
            record.tier = _tier
        return redact(super().format(record))


FORMATTERS = {"json": "jobcast.logs.JsonLineFormatter", "text": "jobcast.logs.TextFormatter"}


def logging_config(fmt: str, level: str) -> dict:
    """The dictConfig of every tier (Django's LOGGING, gunicorn's logconfig_dict, uvicorn's log_config).

    One handler on stderr for the root logger; the servers' loggers propagate to it instead
    of keeping handlers of their own, so every line has one shape.
    """
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "jobcast.logs.ContextFilter"}},
        "formatters": {"jobcast": {"()": FORMATTERS[fmt]}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "jobcast", "filters": ["context"],
                        "stream": "ext://sys.stderr"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # Each server's own loggers: no handlers of their own, so they reach the root's.
            **{name: {"handlers": [], "propagate": True, "level": level}
               for name in ("gunicorn.error", "uvicorn", "uvicorn.error", "celery")},
            # Access lines: jobcast.web.middleware logs one line per request itself (with its id);
            # uvicorn's (the ws tier's HTTP) is off.
            "gunicorn.access": {"handlers": [], "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def tier_logging() -> dict:
    """The dictConfig the servers of a tier use: the settings' LOGGING (jobcast's standalone settings
    make it with logging_config), else, for a product without one, jobcast's format and level."""
    from django.conf import settings

    from jobcast.conf import option

    return getattr(settings, "LOGGING", None) or logging_config(option("LOG_FORMAT"), option("LOG_LEVEL"))
