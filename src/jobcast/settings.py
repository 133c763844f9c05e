"""Django settings of jobcast's standalone project (what `jobcast run` serves): embedded defaults,
values from jobcast.env.

The standalone project is one user of jobcast's apps, as a product that installs them is
(docs/integration.md): the same INSTALLED_APPS, URLs (jobcast.web.urls includes the ones a
product includes), ws routes and Celery task. jobcast's own options come from jobcast.conf
(`JOBCAST` is empty here: every option is its environment variable's value or default).
Production strictness is a system check (jobcast.jobs.checks), not a second settings file.
"""

import secrets
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
# Strict-Transport-Security on answers to requests that came over TLS (X-Forwarded-Proto: https
# from a trusted proxy, above); plain HTTP answers never carry it.
SECURE_HSTS_SECONDS = env.secure_hsts_seconds
X_FRAME_OPTIONS = "DENY"

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
    "jobcast.web",  # templates and static files (jobcast.js): found by Django's app loaders
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
    # X-Frame-Options: DENY on every answer, also where no nginx adds it (the uvicorn front door,
    # a tier reached directly); SecurityMiddleware adds nosniff, Referrer-Policy and HSTS.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jobcast.web.urls"
WSGI_APPLICATION = "jobcast.web.wsgi.application"
ASGI_APPLICATION = "jobcast.ws.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# The ws tier's channel layer (jobcast.ws.layer, docs/events.md), under its own alias: one Redis
# pub/sub channel per group, on JOBCAST's REDIS_URL, and local per-socket queues of at most
# JOBCAST_CHANNEL_CAPACITY messages.
CHANNEL_LAYERS = {"jobcast": {"BACKEND": "jobcast.ws.layer.JobcastChannelLayer"}}

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
# jobcast.js, the pages' script and style (jobcast.web's static/): served by the front door from
# STATIC_ROOT after collectstatic.
STATIC_ROOT = DATA_DIR / "static"

DATA_UPLOAD_MAX_MEMORY_SIZE = env.jobcast_max_body_bytes

# JSON lines (JOBCAST_LOG_FORMAT=json) or readable text; the servers' loggers use the same
# dictionary (jobcast.logs, docs/operations.md "Logs").
LOGGING = logging_config(env.jobcast_log_format, env.jobcast_log_level)

# jobcast's own options: none set here, so each is its environment variable's value or default
# (jobcast.conf, docs/configuration.md). A product sets the ones it wants in its own JOBCAST.
JOBCAST: dict = {}

CSRF_FAILURE_VIEW = "jobcast.web.views.csrf_failure"
