"""jobcast: background jobs for Django with live progress over WebSockets.

The shared core lives here; each tier (`jobcast.web`, `jobcast.ws`, `jobcast.worker`)
imports it and never the other way round (docs/architecture.md).
"""

import os

__version__ = "0.1.0"

SETTINGS_MODULE = "jobcast.settings"


def django_setup() -> None:
    """Point Django at jobcast's one settings module and initialise it (every entry point calls this)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    import django

    django.setup()
