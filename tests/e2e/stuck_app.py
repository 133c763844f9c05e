"""An ASGI app whose requests never finish, to test the ws server's shutdown grace (test_drain.py)."""

import asyncio
import sys


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    print("stuck request started", file=sys.stderr, flush=True)
    await asyncio.Event().wait()  # until uvicorn cancels it
