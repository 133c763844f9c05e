"""The chart against the real programs it relies on: promtool on the alert rules, nginx on the
static sidecar's config, and jobcast itself for the commands, paths and ports the pods use."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.helm.manifests import CHART, REPO, containers, pod_spec

ALERTS = CHART / "files" / "prometheus" / "alerts.yml"
ALERT_TESTS = Path(__file__).with_name("promtool") / "alerts_test.yml"


def tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: scripts/system-deps test installs it")
        pytest.skip(f"{name} is not installed (scripts/system-deps test installs it)")
    return path


# --- promtool ----------------------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules():
    done = subprocess.run([tool("promtool"), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_each_alert_fires_on_what_it_is_for_and_not_on_a_healthy_stack():
    done = subprocess.run([tool("promtool"), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_unit_tests_fail_when_a_threshold_changes(tmp_path):
    text = ALERTS.read_text()
    assert "(jobcast_queue_depth) > 100" in text
    (tmp_path / "alerts.yml").write_text(text.replace("(jobcast_queue_depth) > 100", "(jobcast_queue_depth) > 200"))
    cases = ALERT_TESTS.read_text().replace("../../../deploy/helm/jobcast/files/prometheus/alerts.yml", "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(cases)
    done = subprocess.run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0
    assert "JobcastQueueBacklog" in done.stdout + done.stderr


# --- the static sidecar's nginx ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_static_sidecar_serves_static_files_and_nothing_else(default):
    """The sidecar's rendered nginx.conf, run by the host's nginx on loopback (the pod runs nginx:1.28)."""
    nginx = tool("nginx")
    config = default.get("ConfigMap", "rel-jobcast-static")["data"]["nginx.conf"]
    web = default.get("Deployment", "rel-jobcast-web")
    sidecar = next(c for c in containers(web, init=False) if c["name"] == "static")
    assert sidecar["command"][:2] == ["nginx", "-e"] and "/etc/jobcast-static/nginx.conf" in sidecar["command"]
    root = Path(tempfile.mkdtemp(prefix="jobcast-static-"))
    try:
        root.chmod(0o755)  # nginx's workers (nobody, when the test runs as root) read the files
        (root / "static" / "ninja").mkdir(parents=True)
        (root / "static" / "ninja" / "app.css").write_text("body{}")
        (root / "tmp").mkdir(mode=0o777)
        port = free_port()
        config = config.replace("/tmp/", f"{root}/tmp/").replace("alias /static/;", f"alias {root}/static/;")
        config = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", config)
        (root / "nginx.conf").write_text(config)
        test = subprocess.run([nginx, "-t", "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf")],
                              capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        server = subprocess.Popen([nginx, "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/static/ninja/app.css", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode() if server.poll() is not None else "timeout"
                    time.sleep(0.1)
            assert response.status_code == 200 and response.text == "body{}"
            assert "public" in response.headers.get_list("cache-control")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-type"].startswith("text/css")
            for path in ("/metrics", "/healthz", "/", "/api/jobs/", "/static/../nginx.conf"):
                assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code in (400, 404), path
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- jobcast's own commands, paths and ports ---------------------------------------------------


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_each_tier_runs_the_images_command_for_it(default):
    for tier in ("web", "ws", "worker"):
        stage = dockerfile().split(f"AS {tier}\n", 1)[1].split("\nFROM ", 1)[0]
        cmd = re.search(r"^CMD (\[.*\])$", stage, flags=re.MULTILINE).group(1)
        container = next(c for c in containers(default.get("Deployment", f"rel-jobcast-{tier}"), init=False) if c["name"] == tier)
        assert container["command"] == eval(cmd)  # noqa: S307 - the Dockerfile's JSON-form CMD


def test_the_pods_run_as_the_images_user_and_write_where_jobcast_writes(default):
    from jobcast.env import Env

    uid = re.search(r"^USER (\d+):(\d+)$", dockerfile(), flags=re.MULTILINE)
    data_dir = re.search(r"JOBCAST_DATA_DIR=(\S+)", dockerfile()).group(1)
    for tier in ("web", "ws", "worker"):
        spec = pod_spec(default.get("Deployment", f"rel-jobcast-{tier}"))
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (int(uid[1]), int(uid[2]))
    # settings.STATIC_ROOT and `jobcast run web|worker`'s multiprocess folder are under the data dir.
    assert re.search(r'^STATIC_ROOT = DATA_DIR / "static"$', (REPO / "src/jobcast/settings.py").read_text(), flags=re.MULTILINE)
    assert 'env.data_dir / "metrics"' in (REPO / "src/jobcast/cli/run.py").read_text()
    web = default.get("Deployment", "rel-jobcast-web")
    mounts = {m["mountPath"] for c in containers(web) for m in c.get("volumeMounts", [])}
    assert {"/tmp", f"{data_dir}/static", f"{data_dir}/metrics"} <= mounts
    # The chart's default ports are jobcast's.
    ports = {c["name"]: c["ports"][0]["containerPort"] for t in ("web", "ws", "worker")
             for c in containers(default.get("Deployment", f"rel-jobcast-{t}"), init=False) if c["name"] == t}
    assert ports == {
        "web": Env.model_fields["jobcast_web_port"].default,
        "ws": Env.model_fields["jobcast_ws_port"].default,
        "worker": Env.model_fields["jobcast_worker_metrics_port"].default,
    }


def test_migrate_check_is_what_the_wait_init_container_needs(tmp_path):
    """`jobcast manage migrate --check` fails on a database with unapplied migrations and passes
    once they are applied: the loop in the pods' wait-for-migrations init container relies on it."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "JOBCAST_DATA_DIR": str(tmp_path),
           "SECRET_KEY": "test", "REDIS_URL": "redis://127.0.0.1:1/0"}
    jobcast = [str(Path(sys.executable).with_name("jobcast"))]  # the venv's entry point, as in the image

    def run(*args):
        return subprocess.run([*jobcast, "manage", *args], env=env, capture_output=True, text=True, timeout=120)

    assert run("migrate", "--check").returncode != 0
    applied = run("migrate", "--noinput")
    assert applied.returncode == 0, applied.stderr
    check = run("migrate", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_tls_redis_url_the_docs_give_verifies_certificates_in_every_client():
    """docs/kubernetes.md: `rediss://…?ssl_cert_reqs=required[&ssl_ca_certs=…]` makes redis-py
    (publisher, ws tier, channel layer) and kombu (Celery's broker) verify the server; without
    the parameter kombu would not."""
    import ssl

    import kombu
    from redis.connection import SSLConnection, parse_url

    url = "rediss://:pw@redis.example.com:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/jobcast/redis-ca/ca.pem"
    parsed = parse_url(url)
    assert parsed["connection_class"] is SSLConnection
    assert (parsed["ssl_cert_reqs"], parsed["ssl_ca_certs"]) == ("required", "/etc/jobcast/redis-ca/ca.pem")
    broker = kombu.Connection(url).ssl
    assert broker == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/jobcast/redis-ca/ca.pem"}
    assert kombu.Connection("rediss://:pw@redis.example.com:6380/0").ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
