"""System checks: production strictness without a second settings file (docs/configuration.md)."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register(deploy=True)
def check_production_settings(app_configs, **kwargs):
    """`manage.py check --deploy`: a real SECRET_KEY, no DEBUG, explicit hosts."""
    problems = []
    if not getattr(settings, "SECRET_KEY_FROM_ENV", True):  # jobcast's standalone settings say; a product's are its own
        problems.append(Error("SECRET_KEY is not set in the environment.", id="jobcast.E001"))
    if settings.DEBUG:
        problems.append(Error("DEBUG is on.", id="jobcast.E002"))
    if "*" in settings.ALLOWED_HOSTS:
        problems.append(Warning("ALLOWED_HOSTS contains '*'.", id="jobcast.W001"))
    return problems
