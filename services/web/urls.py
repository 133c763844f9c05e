"""URLs of jobcast's standalone project: the front page, the login, the admin, and the URLconfs a
product includes too (the API, the operator endpoints) beside jobcast's own pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from jobcast.web import admin as _admin  # noqa: F401 - registers the job, user and group admins (no autodiscovery here)
from jobcast.web import views

urlpatterns = [
    path("", views.index, name="index"),
    path("", include("jobcast.web.api_urls")),
    path("", include("jobcast.web.page_urls")),
    path("admin/", admin.site.urls),
    # How a browser gets the session that /api/ and the ws tier accept (docs/protocol.md):
    # Django's views, so CSRF, safe `next` redirects and session rotation are Django's.
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("jobcast.web.operator_urls")),
]

handler400 = "jobcast.web.views.bad_request"
handler404 = "jobcast.web.views.not_found"
handler500 = "jobcast.web.views.server_error"
