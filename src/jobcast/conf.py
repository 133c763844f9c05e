"""jobcast's options, read one way: the `JOBCAST` setting laid over defaults from the environment.

Everything that runs in a tier reads its options here, `option("HISTORY_MAXLEN")`, never
`settings.JOBCAST[...]` nor the environment (tests/unit/test_configuration.py). jobcast's
standalone project leaves `JOBCAST` empty, so every option comes from its environment variable
(docs/configuration.md); a product that installs jobcast's apps sets only what it wants in its
own settings, `JOBCAST = {"REDIS_URL": ..., "KIND_MODULES": ["shop.jobs"]}`, and the rest keeps
the variable's value or default (docs/integration.md). Values are validated as the variables are
(a wrong one is ImproperlyConfigured naming it), and an unknown name is refused, so a typo cannot
pass silently.

Settings are read at call time: a test that replaces `settings.JOBCAST` (pytest-django's
`settings` fixture, `override_settings`) is seen at once. The merged options are kept for as
long as `settings.JOBCAST` is the same object, so a read on a hot path is two attribute lookups.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from pydantic import ValidationError

from jobcast.env import Env

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Each option and the jobcast.env field it defaults to (the variable of the same name, upper case).
FIELDS = {
    "REDIS_URL": "redis_url",
    "KIND_MODULES": "jobcast_kind_modules",
    "FILES_ROOT": "jobcast_files_root",
    "PROGRESS_MAX_RATE": "jobcast_progress_max_rate",
    "HISTORY_MAXLEN": "jobcast_history_maxlen",
    "HISTORY_TTL": "jobcast_history_ttl",
    "MAX_BODY_BYTES": "jobcast_max_body_bytes",
    "SUBMIT_RATE_PER_MINUTE": "jobcast_submit_rate_per_minute",
    "MAX_ACTIVE_JOBS_PER_USER": "jobcast_max_active_jobs_per_user",
    "TICKET_TTL": "jobcast_ticket_ttl",
    "MAX_ATTEMPTS": "jobcast_max_attempts",
    "VISIBILITY_TIMEOUT": "jobcast_visibility_timeout",
    "CANCEL_CHECK_INTERVAL": "jobcast_cancel_check_interval",
    "REDIS_RETRY_SECONDS": "jobcast_redis_retry_seconds",
    "WS_MAX_CONNECTIONS": "jobcast_ws_max_connections",
    "WS_MAX_CONNECTIONS_PER_USER": "jobcast_ws_max_connections_per_user",
    "WS_PING_INTERVAL": "jobcast_ws_ping_interval",
    "WS_SEND_TIMEOUT": "jobcast_ws_send_timeout",
    "WS_DRAIN_SECONDS": "jobcast_ws_drain_seconds",
    "WS_SHUTDOWN_GRACE_SECONDS": "jobcast_ws_shutdown_grace_seconds",
    "WS_RESYNC_SECONDS": "jobcast_ws_resync_seconds",
    "WS_TOKEN_RECHECK_SECONDS": "jobcast_ws_token_recheck_seconds",
    "CHANNEL_CAPACITY": "jobcast_channel_capacity",
    "JWT_SECRET": "jobcast_jwt_secret",
    "JWT_PUBLIC_KEY": "jobcast_jwt_public_key",
    "JWT_AUDIENCE": "jobcast_jwt_audience",
    "JWT_ISSUER": "jobcast_jwt_issuer",
    # The tiers' own servers (the launcher, `jobcast run`, reads jobcast.env itself for what it starts).
    "BIND": "jobcast_bind",
    "FORWARDED_ALLOW_IPS": "jobcast_forwarded_allow_ips",
    "WEB_PORT": "jobcast_web_port",
    "WS_PORT": "jobcast_ws_port",
    "WEB_CONCURRENCY": "web_concurrency",
    "WEB_THREADS": "jobcast_web_threads",
    "WORKER_SHUTDOWN_SECONDS": "jobcast_worker_shutdown_seconds",
    "WORKER_METRICS_PORT": "jobcast_worker_metrics_port",
    "LOG_LEVEL": "jobcast_log_level",
    "LOG_FORMAT": "jobcast_log_format",
    "CELERY_TASK_EVENTS": "jobcast_celery_task_events",
    # prometheus-client reads this variable itself; `jobcast run web|worker` sets it.
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_multiproc_dir",
}
# Options a product may give as a list; the variables hold them comma-separated.
LISTS = {"KIND_MODULES", "FORWARDED_ALLOW_IPS"}

_NOT_SET: dict = {}
_cache: tuple[object, dict[str, Any]] | None = None


def merged(given: dict | None) -> dict[str, Any]:
    """Every option: `given` (a JOBCAST setting) over the environment's values and defaults, validated."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ImproperlyConfigured(f"JOBCAST has unknown options {unknown}; the options are {sorted(FIELDS)} (docs/configuration.md)")
    for name in LISTS & set(given):
        if isinstance(given[name], (list, tuple)):
            given[name] = ",".join(given[name])
    try:
        env = Env(**{FIELDS[name]: value for name, value in given.items()})
    except ValidationError as exc:
        problems = "; ".join(f"{_option_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ImproperlyConfigured(f"JOBCAST: {problems}") from None
    options = {name: getattr(env, field) for name, field in FIELDS.items()}
    options["FILES_ROOT"] = str(env.files_root)
    options["REDIS_URL"] = env.redis_url or DEFAULT_REDIS_URL
    return options


def _option_name(loc) -> str:
    field = loc[0] if loc else ""
    return next((name for name, f in FIELDS.items() if f == field), str(field))


def options() -> dict[str, Any]:
    """jobcast's options as they are now (settings read at call time)."""
    global _cache
    given = getattr(settings, "JOBCAST", _NOT_SET)
    cache = _cache
    if cache is not None and cache[0] is given:
        return cache[1]
    values = merged(given)
    _cache = (given, values)
    return values


def option(name: str) -> Any:
    """One of jobcast's options (KeyError for a name that is not one)."""
    return options()[name]
