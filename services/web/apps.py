"""jobcast.web as a Django app: its templates/ and static/ (jobcast.js, the pages' script and style)
are found by Django's app loaders, in jobcast's standalone project and in a product alike."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "jobcast.web"
    label = "jobcast_web"
    verbose_name = "jobcast web"
