"""WebSocket URL routes of the ws tier."""

from django.urls import path, re_path

from jobcast.ws.consumers import JobConsumer, NoSuchEndpoint, UserJobsConsumer

websocket_urlpatterns = [
    path("ws/jobs/<str:job_id>/", JobConsumer.as_asgi()),
    path("ws/jobs/", UserJobsConsumer.as_asgi()),
    re_path(r"^ws/", NoSuchEndpoint.as_asgi()),
]
