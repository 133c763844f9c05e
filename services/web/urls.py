"""URLs of the web tier."""

from django.contrib.auth import views as auth_views
from django.urls import path

from jobcast.web import health, views
from jobcast.web.api import api

urlpatterns = [
    path("", views.index, name="index"),
    path("api/", api.urls),
    # How a browser gets the session that /api/ and the ws tier accept (docs/protocol.md):
    # Django's views, so CSRF, safe `next` redirects and session rotation are Django's.
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", health.metrics),
]

handler400 = "jobcast.web.views.bad_request"
handler404 = "jobcast.web.views.not_found"
handler500 = "jobcast.web.views.server_error"
