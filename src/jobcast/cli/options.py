"""Options several commands share."""

from __future__ import annotations

import click

from jobcast import use_settings


def _choose_settings(ctx, param, value):
    if value:
        use_settings(value)
    return value


# Every command that loads Django takes --settings (a product's settings module, docs/integration.md);
# without it: DJANGO_SETTINGS_MODULE, else jobcast's standalone settings.
settings_option = click.option(
    "--settings", metavar="MODULE", expose_value=False, is_eager=True, callback=_choose_settings,
    help="Django settings module (default: DJANGO_SETTINGS_MODULE, else jobcast.settings).",
)
