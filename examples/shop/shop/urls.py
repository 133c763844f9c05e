"""The product's URLs, with jobcast's HTTP API mounted under /jobcast/ (its ws routes are under the
same prefix in shop/asgi.py, so jobcast.js takes `baseUrl: "/jobcast"`)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("newsletter/", include("newsletter.urls")),
    path("jobcast/", include("jobcast.web.api_urls")),  # /jobcast/api/jobs/, /jobcast/api/ws-tickets/, …
    path("", include("jobcast.web.operator_urls")),  # /healthz, /readyz, /metrics
]
