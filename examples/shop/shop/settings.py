"""Settings of "shop", a small existing Django product that installs jobcast's apps (docs/integration.md).

Its own user model (customers.Customer, in an app labelled `accounts`: signs in by email, no username), its own database and
sessions, its own models (newsletter.Subscriber) that a job kind reads and writes. jobcast reads
its options from JOBCAST below; what is not set there keeps its environment variable's value or
default (docs/configuration.md), so `jobcast run web|ws|worker --settings shop.settings` takes its
ports from JOBCAST_WEB_PORT and JOBCAST_WS_PORT as jobcast's own project does.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# The product's own configuration, read its own way (here: SHOP_* variables).
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "shop-example-only-never-use-this-key-in-production")
DEBUG = os.environ.get("SHOP_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # jobcast, as installed apps: its models (jobs, tokens), and jobcast.web for jobcast.js.
    "channels",
    "jobcast.accounts",
    "jobcast.jobs",
    "jobcast.web",
    # the product's own apps
    "customers",
    "newsletter",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "shop.urls"
# The ws tier (`jobcast run ws --settings shop.settings`) serves this, jobcast's routes inside it.
ASGI_APPLICATION = "shop.asgi.application"

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

DATABASES = {"default": dj_database_url.parse(os.environ.get("SHOP_DATABASE_URL", f"sqlite:///{BASE_DIR / 'shop.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.Customer"  # the customers app, labelled `accounts`
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/newsletter/"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"

# jobcast's channel layer, under its own alias (a layer of the product's own would be "default").
CHANNEL_LAYERS = {"jobcast": {"BACKEND": "jobcast.ws.layer.JobcastChannelLayer"}}

# jobcast's options: only what differs from the environment's values and defaults.
JOBCAST = {
    "REDIS_URL": os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "KIND_MODULES": ["newsletter.jobs"],
}
