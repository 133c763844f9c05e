"""Django settings for every tier: one path, embedded defaults, values from jobcast.env.

Production strictness is a system check (jobcast.checks), not a second settings file.
"""

import secrets
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

from jobcast.env import get_env
from jobcast.logs import logging_config

env = get_env()
DATA_DIR: Path = env.data_dir


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data dir."""
    if env.secret_key:
        return env.secret_key
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
SECRET_KEY_FROM_ENV = bool(env.secret_key)
DEBUG = env.debug
ALLOWED_HOSTS = [h.strip() for h in env.allowed_hosts.split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env.csrf_trusted_origins.split(",") if o.strip()]
# nginx sets X-Forwarded-Proto; the tiers only listen behind it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False

INSTALLED_APPS = [
    # The admin without autodiscovery: the web tier registers its admins (jobcast.web.admin),
    # so the ws and worker processes load no admin code of jobcast's.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # its API docs page then uses the collected static files, not a CDN
    "jobcast.accounts",
    "jobcast.jobs",
]

MIDDLEWARE = [
    # The request's id (X-Request-ID from nginx, or a new one) for its log lines and its answer.
    "jobcast.web.middleware.RequestContextMiddleware",
    "jobcast.web.middleware.RequestMetricsMiddleware",
    "jobcast.web.middleware.JsonErrorMiddleware",
    "jobcast.web.middleware.BodySizeLimitMiddleware",
    # /healthz, /readyz, /metrics: probes and Prometheus reach an instance by its IP, so
    # these are served before CommonMiddleware's ALLOWED_HOSTS check (docs/deploy.md).
    "jobcast.web.middleware.OperatorEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "jobcast.web.urls"
WSGI_APPLICATION = "jobcast.web.wsgi.application"
ASGI_APPLICATION = "jobcast.ws.asgi.application"

# The web tier's pages and static files (templates/, static/ in services/web, installed as
# jobcast.web). Found without importing the tier: settings are the core's, and every tier loads them.
WEB_TIER_DIR = Path(find_spec("jobcast.web").submodule_search_locations[0])

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [WEB_TIER_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
            "django.contrib.messages.context_processors.messages",
        ]},
    }
]

DATABASE_URL = env.database_url or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Three tiers write one SQLite file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions queue writers on the busy timeout instead of failing.
    # Connections persist (conn_max_age above) as with PostgreSQL: opening one costs
    # ~1 ms of CPU, which was a fifth of the ws tier's handshake cost (bench D).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.redis_url or "redis://127.0.0.1:6379/0"

# The ws tier's channel layer (jobcast.ws.layer, docs/events.md): one Redis pub/sub channel
# per group, on REDIS_URL, and local per-socket queues of at most `capacity` messages.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "jobcast.ws.layer.JobcastChannelLayer",
        "CONFIG": {"prefix": "asgi", "capacity": env.jobcast_channel_capacity},
    }
}

AUTH_PASSWORD_VALIDATORS = []
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# A browser logs in at /accounts/login/ (Django's LoginView, jobcast.web.urls); the session
# then authenticates /api/ (with CSRF for writes) and the ws handshake (docs/protocol.md).
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
# jobcast.js, the pages' script and style: served by the front door from STATIC_ROOT after collectstatic.
STATICFILES_DIRS = [WEB_TIER_DIR / "static"]

DATA_UPLOAD_MAX_MEMORY_SIZE = env.jobcast_max_body_bytes

# JSON lines (JOBCAST_LOG_FORMAT=json) or readable text; the servers' loggers use the same
# dictionary (jobcast.logs, docs/operations.md "Logs").
LOGGING = logging_config(env.jobcast_log_format, env.jobcast_log_level)

# jobcast's own options. Everything that runs reads them from here, never from the
# environment, so a test (or a product's settings) changes one place (docs/configuration.md).
JOBCAST = {
    "KIND_MODULES": env.jobcast_kind_modules,
    "FILES_ROOT": str(env.files_root),
    "PROGRESS_MAX_RATE": env.jobcast_progress_max_rate,
    "HISTORY_MAXLEN": env.jobcast_history_maxlen,
    "HISTORY_TTL": env.jobcast_history_ttl,
    "MAX_BODY_BYTES": env.jobcast_max_body_bytes,
    "SUBMIT_RATE_PER_MINUTE": env.jobcast_submit_rate_per_minute,
    "TICKET_TTL": env.jobcast_ticket_ttl,
    "MAX_ATTEMPTS": env.jobcast_max_attempts,
    "VISIBILITY_TIMEOUT": env.jobcast_visibility_timeout,
    "CANCEL_CHECK_INTERVAL": env.jobcast_cancel_check_interval,
    "REDIS_RETRY_SECONDS": env.jobcast_redis_retry_seconds,
    "WS_MAX_CONNECTIONS": env.jobcast_ws_max_connections,
    "WS_MAX_CONNECTIONS_PER_USER": env.jobcast_ws_max_connections_per_user,
    "WS_PING_INTERVAL": env.jobcast_ws_ping_interval,
    "WS_DRAIN_SECONDS": env.jobcast_ws_drain_seconds,
    "WS_SHUTDOWN_GRACE_SECONDS": env.jobcast_ws_shutdown_grace_seconds,
    "WS_RESYNC_SECONDS": env.jobcast_ws_resync_seconds,
    "WS_TOKEN_RECHECK_SECONDS": env.jobcast_ws_token_recheck_seconds,
    "MAX_ACTIVE_JOBS_PER_USER": env.jobcast_max_active_jobs_per_user,
    # The tiers' own servers (what the launcher, `jobcast run`, starts reads jobcast.env itself).
    "BIND": env.jobcast_bind,
    "FORWARDED_ALLOW_IPS": env.jobcast_forwarded_allow_ips,
    "WEB_PORT": env.jobcast_web_port,
    "WS_PORT": env.jobcast_ws_port,
    "WEB_CONCURRENCY": env.web_concurrency,
    "WEB_THREADS": env.jobcast_web_threads,
    "WORKER_SHUTDOWN_SECONDS": env.jobcast_worker_shutdown_seconds,
    "WORKER_METRICS_PORT": env.jobcast_worker_metrics_port,
    "LOG_LEVEL": env.jobcast_log_level,
    "LOG_FORMAT": env.jobcast_log_format,
    "CELERY_TASK_EVENTS": env.jobcast_celery_task_events,
    # prometheus-client reads this variable itself; `jobcast run web|worker` sets it.
    "PROMETHEUS_MULTIPROC_DIR": env.prometheus_multiproc_dir,
}
CSRF_FAILURE_VIEW = "jobcast.web.views.csrf_failure"
