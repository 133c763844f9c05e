"""jobcast: background jobs for Django with live progress over WebSockets.

The shared core lives here; each tier (`jobcast.web`, `jobcast.ws`, `jobcast.worker`)
imports it and never the other way round (docs/architecture.md).
"""

import os

__version__ = "0.1.0"

SETTINGS_MODULE = "jobcast.settings"


def use_settings() -> None:
    """Point Django at jobcast's one settings module (the only place that sets it)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE


def django_setup(tier: str | None = None) -> None:
    """Use jobcast's settings and initialise Django (every entry point calls this, naming its tier for the logs)."""
    use_settings()
    if tier:
        import logging

        from jobcast.logs import set_tier

        set_tier(tier)
        logging.captureWarnings(True)  # warnings become log lines (JSON too), not raw stderr text
    import django

    django.setup()
