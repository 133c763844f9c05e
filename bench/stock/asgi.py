"""Stock ASGI app: Django for HTTP, and a consumer that joins group job_<id> and forwards every
event (the Channels tutorial's chat consumer, as celery-progress's websocket mode uses it)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")

import django  # noqa: E402

django.setup()

import json  # noqa: E402

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402


class ProgressConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = f"job_{self.scope['url_route']['kwargs']['job_id']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, event):
        await self.send(text_data=json.dumps(event["data"]))


application = ProtocolTypeRouter({
    "http": get_asgi_application(),
    "websocket": URLRouter([path("ws/jobs/<str:job_id>/", ProgressConsumer.as_asgi())]),
})
