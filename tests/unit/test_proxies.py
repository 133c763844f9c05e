"""JOBCAST_FORWARDED_ALLOW_IPS: the proxies whose X-Forwarded-* the web (gunicorn) and ws (uvicorn) tiers trust."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import yaml

from jobcast.ws import server

REPO = Path(__file__).resolve().parents[2]
seen: list[dict] = []


async def echo_app(scope, receive, send):
    """Records the client address and scheme the app is given."""
    seen.append({"client": scope["client"][0], "scheme": scope["scheme"]})
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def through_uvicorn(peer: str, forwarded_for: str, proto: str) -> dict:
    """What the ws tier's app sees for a request from `peer` carrying X-Forwarded-For/-Proto."""
    config = server.make_config(["--app", "tests.unit.test_proxies:echo_app"])
    config.load()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/", "raw_path": b"/", "query_string": b"", "client": (peer, 40000), "server": ("127.0.0.1", 8002),
        "headers": [(b"x-forwarded-for", forwarded_for.encode()), (b"x-forwarded-proto", proto.encode())],
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    seen.clear()
    asyncio.run(config.loaded_app(scope, receive, send))
    return seen[-1]


def test_the_ws_tier_trusts_forwarded_headers_only_from_the_configured_proxies(settings):
    assert server.make_config([]).forwarded_allow_ips == "127.0.0.1,::1"
    # nginx on another host (10.0.3.7): by default its headers are ignored...
    assert through_uvicorn("10.0.3.7", "203.0.113.9", "https") == {"client": "10.0.3.7", "scheme": "http"}
    # ...and trusted once its network is configured.
    settings.JOBCAST = {**settings.JOBCAST, "FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    assert through_uvicorn("10.0.3.7", "203.0.113.9", "https") == {"client": "203.0.113.9", "scheme": "https"}
    # Anyone else still cannot claim an address.
    assert through_uvicorn("192.0.2.50", "203.0.113.9", "https") == {"client": "192.0.2.50", "scheme": "http"}


def gunicorn_forwarded_allow_ips(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_")}
    done = subprocess.run(
        [sys.executable, "-c", "import jobcast.web.gunicorn_conf as c; print(c.forwarded_allow_ips)"],
        env={**base, **env}, capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


def test_the_web_tier_uses_the_same_setting():
    assert gunicorn_forwarded_allow_ips() == "127.0.0.1,::1"
    assert gunicorn_forwarded_allow_ips(JOBCAST_FORWARDED_ALLOW_IPS="10.0.0.0/8,192.0.2.1") == "10.0.0.0/8,192.0.2.1"


def test_compose_trusts_the_compose_network_for_the_tiers():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for tier in ("web", "ws", "worker"):
        value = services[tier]["environment"]["JOBCAST_FORWARDED_ALLOW_IPS"]
        assert value.startswith("${JOBCAST_FORWARDED_ALLOW_IPS:-"), value  # .env can override it
        default = value.removeprefix("${JOBCAST_FORWARDED_ALLOW_IPS:-").removesuffix("}")
        networks = [ipaddress.ip_network(part) for part in default.split(",")]
        # Docker's default address pools for compose networks.
        assert ipaddress.ip_network("172.18.0.0/16").subnet_of(networks[0]), default
