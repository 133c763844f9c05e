"""The chart against the real programs it relies on: promtool on the alert rules, nginx on the
static sidecar's config, and jobcast itself for the commands, paths and ports the pods use."""

from __future__ import annotations

import json
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
import yaml

from tests.helm.manifests import CHART, REPO, containers, pod_spec

ALERTS = CHART / "files" / "prometheus" / "alerts.yml"
ALERT_TESTS = Path(__file__).with_name("promtool") / "alerts_test.yml"
DASHBOARD = CHART / "files" / "grafana" / "jobcast-overview.json"


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
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def alert_rules() -> dict[str, dict]:
    return {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}


def test_each_alert_fires_on_what_it_is_for_and_not_on_a_healthy_stack():
    done = subprocess.run([tool("promtool"), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not():
    fired, quiet = set(), set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alert_rules()) == fired == quiet, (set(alert_rules()) - fired, set(alert_rules()) - quiet)


def test_the_issues_alerts_are_all_there_with_their_annotations():
    rules = alert_rules()
    assert {"JobcastTierDown", "JobcastTierAbsent", "JobcastWebErrorRatioHigh", "JobcastWebLatencyHigh",
            "JobcastQueueBacklog", "JobcastQueueWaitHigh", "JobcastJobFailureRatioHigh", "JobcastEventLatencyHigh",
            "JobcastSlowReaderDrops", "JobcastNoWorkerConsuming"} <= set(rules)
    assert any("absent_over_time(up" in rule["expr"] for rule in rules.values())
    panels = {panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]}
    for name, rule in rules.items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "dashboard_url", "runbook_url"}, name
        url = re.fullmatch(r"http://127\.0\.0\.1:3000/d/jobcast-overview/jobcast-overview\?viewPanel=(\d+)", annotations["dashboard_url"])
        assert url and int(url.group(1)) in panels, name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert rule["labels"]["severity"] in ("warning", "critical"), name


def test_the_rendered_prometheus_rule_with_overrides_passes_promtool(renders, tmp_path):
    """What the chart renders from ci/monitoring-values.yaml (thresholds and URLs overridden) is still valid."""
    [rule] = renders["monitoring-values.yaml"].of_kind("PrometheusRule")
    (tmp_path / "rendered.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "rendered.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "> 500" in next(r["expr"] for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "JobcastQueueBacklog")


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
    broker = broker_connection(url)
    assert broker.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/jobcast/redis-ca/ca.pem"}
    assert broker.transport_cls == "jobcast.jobs.broker:Transport"
    # A bare rediss:// URL verifies too (kombu on its own would not), and plain redis:// is plain.
    assert kombu.Connection("rediss://:pw@redis.example.com:6380/0").ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert broker_connection("rediss://:pw@redis.example.com:6380/0").ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert broker_connection("redis://:pw@redis.example.com:6379/0").ssl is False
    # Verifying can only be turned off in the URL, on purpose.
    assert broker_connection("rediss://h:6380/0?ssl_cert_reqs=none").ssl == {"ssl_cert_reqs": ssl.CERT_NONE}


def broker_connection(url: str):
    """The kombu connection jobcast's Celery app makes for the broker `url`."""
    from celery import Celery

    from jobcast.jobs.queue import _celery_settings

    app = Celery("probe", set_as_current=False)
    app.add_defaults(lambda: _celery_settings(url))
    return app.connection_for_write()


# --- the Grafana dashboard --------------------------------------------------------------------

# What Grafana puts in place of the dashboard's variables; tests/e2e/test_observability.py runs the
# same substitution against a real Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$instance": ".*"}


def dashboard_queries(dashboard: dict) -> list[tuple[dict, dict, str]]:
    """(panel, target, expr with the variables substituted) for every query of every panel."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel, target, expr))
    return out


def dashboard_problems(dashboard: dict) -> list[str]:
    """What is wrong with the dashboard's structure (empty when it is sound)."""
    problems = []
    ids = [panel["id"] for panel in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids are not unique: {sorted(i for i in ids if ids.count(i) > 1)}")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    if set(variables) != {"datasource", "namespace", "instance"} or variables["datasource"]["type"] != "datasource":
        problems.append(f"variables: {sorted(variables)}")
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"panel {panel['id']} is wider than the dashboard")
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        if mine & cells:
            problems.append(f"panel {panel['id']} overlaps another")
        cells |= mine
        if panel["type"] == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"panel {panel['id']} has no query")
        if not panel.get("description"):
            problems.append(f"panel {panel['id']} has no description")
        refs = [t["refId"] for t in panel.get("targets", [])]
        if len(refs) != len(set(refs)):
            problems.append(f"panel {panel['id']} repeats a refId")
        for target in [panel, *panel.get("targets", [])]:
            if target.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"panel {panel['id']} does not use the datasource variable")
        for target in panel.get("targets", []):
            for selector in re.findall(r"\b(?:jobcast_[a-z_]+|up)\{([^}]*)\}", target["expr"]):
                if 'namespace=~"$namespace"' not in selector or 'instance=~"$instance"' not in selector:
                    problems.append(f"panel {panel['id']}: a selector without the namespace/instance filter: {selector}")
            if re.search(r"\b(?:jobcast_[a-z_]+|up)\b(?![_a-z{])", target["expr"]):
                problems.append(f"panel {panel['id']}: a metric without a selector: {target['expr']}")
    return problems


def test_the_dashboard_is_sound():
    assert dashboard_problems(json.loads(DASHBOARD.read_text())) == []


def test_the_dashboard_lint_catches_a_broken_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    first, second, third = [panel for panel in dashboard["panels"] if panel["type"] != "row"][:3]
    second["id"] = first["id"]
    second["targets"][0]["expr"] = "sum(rate(jobcast_http_requests_total[5m]))"
    third["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    problems = "\n".join(dashboard_problems(dashboard))
    assert "not unique" in problems and "without a selector" in problems and "datasource variable" in problems


def queries_as_rules(exprs: list[str]) -> str:
    """A rules file with each query as a recording rule: `promtool check rules` then parses every one."""
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs)]}]})


def test_every_dashboard_query_is_valid_promql(tmp_path):
    exprs = [expr for _, _, expr in dashboard_queries(json.loads(DASHBOARD.read_text()))]
    (tmp_path / "queries.yml").write_text(queries_as_rules(exprs))
    done = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "queries.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
    # ...and promtool does refuse a broken one.
    (tmp_path / "broken.yml").write_text(queries_as_rules(["sum(rate(jobcast_http_requests_total[1m])"]))
    assert subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "broken.yml")], capture_output=True).returncode != 0


# --- one home for the rules and the dashboard -------------------------------------------------------


def test_compose_loads_the_charts_rules_and_dashboard_files():
    """The alert rules and the dashboard exist once, in the chart's files/; docker compose mounts
    those very files into Prometheus and Grafana (docs/operations.md, "Where the files live")."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["prometheus"]["volumes"])
    rule_files = prometheus["rule_files"]
    assert rule_files and all(mounts.get("./deploy/helm/jobcast/files/prometheus/alerts.yml") == path for path in rule_files)
    grafana = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/jobcast.yml").read_text())["providers"][0]
    assert grafana["./deploy/helm/jobcast/files/grafana"] == provider["options"]["path"]
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_no_second_copy_of_the_rules_or_the_dashboard_exists():
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    with_alerts = [p for p in tracked if p.endswith((".yml", ".yaml")) and "alert: JobcastTierDown" in (REPO / p).read_text()]
    dashboards = [p for p in tracked if p.endswith(".json") and '"uid": "jobcast-overview"' in (REPO / p).read_text()]
    assert with_alerts == ["deploy/helm/jobcast/files/prometheus/alerts.yml"]
    assert dashboards == ["deploy/helm/jobcast/files/grafana/jobcast-overview.json"]


# --- docs/operations.md explains each alert and panel ----------------------------------------------

OPERATIONS = REPO / "docs" / "operations.md"


def test_every_alert_has_a_runbook_and_a_row_in_docs_operations():
    text = OPERATIONS.read_text()
    headings = set(re.findall(r"^#### (Jobcast\w+)$", text, flags=re.MULTILINE))
    rows = set(re.findall(r"^\| (Jobcast\w+) \|", text, flags=re.MULTILINE))
    assert headings == rows == set(alert_rules())
    for name in alert_rules():  # each runbook says what it means, what to check, why, and what to do
        section = text.split(f"#### {name}\n", 1)[1].split("\n#### ", 1)[0]
        assert all(part in section for part in ("**Means:**", "**First checks:**", "**Likely causes:**", "**Do:**")), name


def test_every_panel_is_explained_in_docs_operations():
    rows = dict(re.findall(r"^\| \w+ \| (.+) \((\d+)\) \| .+ \|$", OPERATIONS.read_text(), flags=re.MULTILINE))
    panels = {panel["title"]: str(panel["id"]) for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"}
    assert rows == panels
