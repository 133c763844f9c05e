"""jobcast: background jobs for Django with live progress over WebSockets.

The shared core lives here; each tier (`jobcast.web`, `jobcast.ws`, `jobcast.worker`)
imports it and never the other way round (docs/architecture.md).

Imported as a library (a product's INSTALLED_APPS, docs/integration.md), nothing in jobcast
sets DJANGO_SETTINGS_MODULE: only its entry points (`jobcast`, the tiers' WSGI/ASGI/Celery
modules) default it, to jobcast's standalone settings, when the process has none.
"""

import os
import sys

__version__ = "0.1.0"

SETTINGS_MODULE = "jobcast.settings"  # jobcast's standalone project


def use_settings(module: str | None = None) -> None:
    """For an entry point: Django's settings are `module` when given (`--settings`), else
    DJANGO_SETTINGS_MODULE as the process already has it, else jobcast's standalone settings."""
    if module:
        os.environ["DJANGO_SETTINGS_MODULE"] = module
        # As manage.py does for its folder: a product's settings are found from where it runs.
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)


def django_setup(tier: str | None = None) -> None:
    """Choose the settings (use_settings) and initialise Django (every entry point calls this, naming its tier for the logs)."""
    use_settings()
    if tier:
        import logging

        from jobcast.logs import set_tier

        set_tier(tier)
        logging.captureWarnings(True)  # warnings become log lines (JSON too), not raw stderr text
    import django

    django.setup()
