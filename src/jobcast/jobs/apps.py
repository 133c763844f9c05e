from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobcast.jobs"
    label = "jobcast_jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobcast.jobs import checks  # noqa: F401  (registers system checks)
        from jobcast.jobs.registry import load_builtin_kinds

        load_builtin_kinds()
