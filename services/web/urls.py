"""URLs of the web tier: the API, the pages, the login, the admin and the operator endpoints."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from jobcast.web import admin as _admin  # noqa: F401 - registers the job and user admins (no autodiscovery)
from jobcast.web import health, pages, views
from jobcast.web.api import api

urlpatterns = [
    path("", views.index, name="index"),
    path("api/", api.urls),
    path("jobs/", pages.jobs_page, name="jobs"),
    path("jobs/new/", pages.submit_page, name="submit"),
    path("jobs/<uuid:job_id>/", pages.job_page, name="job"),
    path("jobs/<uuid:job_id>/cancel/", pages.cancel_page, name="cancel"),
    path("staff/jobs/", pages.all_jobs_page, name="all_jobs"),
    path("admin/", admin.site.urls),
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
