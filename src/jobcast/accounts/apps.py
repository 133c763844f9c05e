from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "jobcast.accounts"
    label = "jobcast_accounts"
    default_auto_field = "django.db.models.BigAutoField"
