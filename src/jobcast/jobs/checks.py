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


@register()
def check_channel_layer(app_configs, **kwargs):
    """jobcast's consumers use the channel layer aliased "jobcast" (docs/integration.md): a product must configure it."""
    from jobcast.events.groups import LAYER_ALIAS

    layer = getattr(settings, "CHANNEL_LAYERS", {}).get(LAYER_ALIAS)
    backend = (layer or {}).get("BACKEND", "")
    if backend != "jobcast.ws.layer.JobcastChannelLayer":
        return [Error(f'CHANNEL_LAYERS["{LAYER_ALIAS}"] must be {{"BACKEND": "jobcast.ws.layer.JobcastChannelLayer"}} '
                      f"(found {backend or 'none'}): jobcast's sockets use that layer.", id="jobcast.E003")]
    return []
