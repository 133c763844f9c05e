"""The front door (real nginx, rendered from deploy/nginx/jobcast.conf.template) in front of the tiers."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from jobcast.cli.stack import find_nginx

pytestmark = [pytest.mark.e2e]


def test_the_rendered_config_passes_nginx_t(live_stack):
    conf = live_stack.data_dir / "nginx" / "nginx.conf"
    done = subprocess.run([find_nginx(), "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def test_a_body_over_the_limit_gets_json_413_from_nginx(live_stack):
    with live_stack.client() as client:
        response = client.post("/api/jobs/", content=b"x" * (1_048_576 + 10), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "Request body too large.", "errors": []}


def test_static_files_come_from_nginx_with_cache_headers(live_stack):
    docs = httpx.get(f"{live_stack.url}/api/docs/", timeout=10)
    assert docs.status_code == 200 and "/static/ninja/" in docs.text
    css = httpx.get(f"{live_stack.url}/static/ninja/swagger-ui.css", timeout=10)
    assert css.status_code == 200
    assert css.headers["server"] == "nginx" and "max-age=604800" in css.headers["cache-control"]


def test_json_is_gzipped_and_security_headers_are_set(live_stack):
    with live_stack.client() as client:
        response = client.get("/api/schema/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
