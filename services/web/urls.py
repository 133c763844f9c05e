"""URLs of the web tier."""

from django.urls import path

from jobcast.web import health, views
from jobcast.web.api import api

urlpatterns = [
    path("", views.index, name="index"),
    path("api/", api.urls),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", health.metrics),
]

handler400 = "jobcast.web.views.bad_request"
handler404 = "jobcast.web.views.not_found"
handler500 = "jobcast.web.views.server_error"
