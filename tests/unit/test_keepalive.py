"""nginx, not gunicorn, closes idle kept-alive upstream connections (else: sporadic 502 on POST)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NGINX_DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT = 60  # seconds, nginx's documented default


def upstream_keepalive_timeout(template: str) -> int:
    block = re.search(r"upstream jobcast_web \{(.*?)\}", template, re.S).group(1)
    assert re.search(r"^\s*keepalive \d+;", block, re.M), "the web upstream keeps connections alive"
    setting = re.search(r"^\s*keepalive_timeout (\d+)s?;", block, re.M)
    return int(setting.group(1)) if setting else NGINX_DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT


def test_gunicorn_keeps_connections_longer_than_nginx_reuses_them():
    from jobcast.web import gunicorn_conf

    for name in ("jobcast.conf.template", "compose.conf"):
        text = (REPO / "deploy" / "nginx" / name).read_text()
        assert gunicorn_conf.keepalive > upstream_keepalive_timeout(text), name
