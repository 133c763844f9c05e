"""WebSocket URL routes of the ws tier (docs/protocol.md, "WebSocket API").

jobcast's own ws application (jobcast.ws.asgi) routes them at the root. A product includes
them in its own router, under the prefix its HTTP URLs have (docs/integration.md):

    URLRouter([path("jobcast/", URLRouter(websocket_urlpatterns)), *its_own_routes])
"""

from django.urls import path, re_path

from jobcast.ws.consumers import JobConsumer, NoSuchEndpoint, UserJobsConsumer

websocket_urlpatterns = [
    path("ws/jobs/<str:job_id>/", JobConsumer.as_asgi()),
    path("ws/jobs/", UserJobsConsumer.as_asgi()),
    re_path(r"^ws/", NoSuchEndpoint.as_asgi()),  # any other path under ws/: 4404
]
