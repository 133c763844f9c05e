"""jobcast's HTTP API (`api/…`, docs/protocol.md) as a URLconf to include.

jobcast's own project includes it at the root; a product includes it under a prefix of its
choosing, with its ws routes under the same one, and gives jobcast.js that prefix as `baseUrl`
(docs/integration.md):

    path("jobcast/", include("jobcast.web.api_urls"))     # /jobcast/api/jobs/, …
"""

from django.urls import path

from jobcast.web.api import api

urlpatterns = [path("api/", api.urls)]
