"""System checks: production strictness without a second settings file (docs/configuration.md)."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from jobcast.production import production_problems


@register(deploy=True)
def check_production_settings(app_configs, **kwargs):
    """`manage.py check --deploy`: a real SECRET_KEY, no DEBUG, explicit hosts (what the tiers also
    refuse to start with on a non-loopback address, jobcast.production)."""
    problems = [Error(message, id=check_id) for check_id, message in production_problems(settings)]
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
