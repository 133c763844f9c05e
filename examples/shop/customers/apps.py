from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    # Labelled `accounts`, as many products' user apps are: jobcast's own labels all start with
    # `jobcast_`, so the two live side by side (docs/integration.md).
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
