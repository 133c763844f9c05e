"""What the rendered chart does, object by object: tiers, autoscaling, migrations, drains,
probes, hardening, secrets, routing, monitoring, NetworkPolicy, the helm test pod and NOTES."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from jobcast.env import Env
from tests.helm.manifests import (
    CHART,
    containers,
    hook_events,
    hook_weight,
    ingress_path_matches,
    pod_labels,
    pod_spec,
    render,
    route_path_matches,
    selects,
    values_file,
)

TIERS = ("web", "ws", "worker")
MAIN_PORT = {"web": "http", "ws": "http", "worker": "metrics"}
OPERATOR_PATHS = ("/metrics", "/healthz", "/readyz")


@pytest.fixture(scope="module")
def monitoring_without_overrides():
    values = copy.deepcopy(values_file("monitoring-values.yaml"))
    for key in ("alerts", "grafanaUrl", "runbookBaseUrl"):
        values["metrics"]["prometheusRule"].pop(key)
    return render(values)


def deployment(render, tier):
    return render.get("Deployment", f"rel-jobcast-{tier}")


def main_container(render, tier):
    return next(c for c in containers(deployment(render, tier), init=False) if c["name"] == tier)


def env_of(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def chart_meta() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


# --- the three tiers ----------------------------------------------------------------------


def test_three_deployments_with_distinct_selectors(case):
    deployments = case.of_kind("Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == [f"rel-jobcast-{t}" for t in sorted(TIERS)]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert len({json.dumps(s, sort_keys=True) for s in selectors}) == 3
    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(d))
        # No Deployment's selector picks another tier's pods.
        others = [o for o in deployments if o is not d]
        assert not any(selects(selector, pod_labels(o)) for o in others)


def test_each_tier_runs_its_own_command_from_one_image(case):
    images = set()
    for tier in TIERS:
        container = main_container(case, tier)
        assert container["command"] == ["jobcast", "run", tier]
        images.add(container["image"])
    assert len(images) == 1


def test_the_image_tag_defaults_to_the_app_version(default, renders):
    assert main_container(default, "web")["image"] == f"jobcast:{chart_meta()['appVersion']}"
    digest = values_file("existing-secret-values.yaml")["image"]["digest"]
    assert main_container(renders["existing-secret-values.yaml"], "ws")["image"] == f"registry.example.com/platform/jobcast@{digest}"
    tagged = render({**values_file("default-values.yaml"), "image": {"tag": "1.2.3"}})
    assert main_container(tagged, "worker")["image"] == "jobcast:1.2.3"


def test_every_variable_the_chart_sets_is_one_jobcast_reads(case):
    """A misspelt variable would be ignored silently by the tiers (docs/configuration.md)."""
    known = {name.upper() for name in Env.model_fields}
    config = case.get("ConfigMap", "rel-jobcast-config")["data"]
    assert set(config) - known == set()
    for workload in case.objects:
        if workload["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(workload):
            if container["name"] == "static":
                continue
            assert set(env_of(container)) - known == set(), (workload["metadata"]["name"], container["name"])


def test_ports_and_tier_settings_reach_the_containers(default):
    assert env_of(main_container(default, "web"))["JOBCAST_WEB_PORT"] == "8001"
    assert env_of(main_container(default, "ws"))["JOBCAST_WS_PORT"] == "8002"
    assert env_of(main_container(default, "worker"))["JOBCAST_WORKER_METRICS_PORT"] == "9101"
    assert env_of(main_container(default, "web"))["WEB_CONCURRENCY"] == "2"
    assert env_of(main_container(default, "worker"))["JOBCAST_WORKER_CONCURRENCY"] == "2"
    config = default.get("ConfigMap", "rel-jobcast-config")["data"]
    assert config["JOBCAST_BIND"] == "0.0.0.0" and config["DEBUG"] == "false"


# --- autoscaling, budgets, spread ----------------------------------------------------------------


def test_autoscalers_target_their_own_tier(default):
    hpas = {h["metadata"]["name"]: h for h in default.of_kind("HorizontalPodAutoscaler")}
    assert set(hpas) == {f"rel-jobcast-{t}" for t in TIERS}
    for tier in TIERS:
        hpa = hpas[f"rel-jobcast-{tier}"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"rel-jobcast-{tier}"}
        assert hpa["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
        assert "replicas" not in deployment(default, tier)["spec"]
    # Every removed ws pod makes its clients reconnect: scale down slowly.
    assert hpas["rel-jobcast-ws"]["spec"]["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def test_the_ws_tier_can_scale_on_open_connections(renders):
    monitoring = renders["monitoring-values.yaml"]
    ws = monitoring.get("HorizontalPodAutoscaler", "rel-jobcast-ws")
    assert ws["spec"]["metrics"] == [{
        "type": "Pods",
        "pods": {"metric": {"name": "jobcast_ws_connections"}, "target": {"type": "AverageValue", "averageValue": "4000"}},
    }]
    web = monitoring.get("HorizontalPodAutoscaler", "rel-jobcast-web")
    assert {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}} in [m.get("resource") for m in web["spec"]["metrics"]]
    worker = monitoring.get("HorizontalPodAutoscaler", "rel-jobcast-worker")
    assert worker["spec"]["metrics"][-1]["external"]["metric"]["name"] == "jobcast_queue_depth"


def test_without_autoscaling_the_deployments_carry_replicas(renders):
    off = renders["autoscaling-off-values.yaml"]
    assert off.of_kind("HorizontalPodAutoscaler") == []
    assert {t: deployment(off, t)["spec"]["replicas"] for t in TIERS} == {"web": 3, "ws": 4, "worker": 1}


def test_disruption_budgets(default, renders):
    budgets = {b["metadata"]["name"]: b["spec"] for b in default.of_kind("PodDisruptionBudget")}
    assert {name: spec.get("maxUnavailable") for name, spec in budgets.items()} == {f"rel-jobcast-{t}": 1 for t in TIERS}
    off = {b["metadata"]["name"]: b["spec"] for b in renders["autoscaling-off-values.yaml"].of_kind("PodDisruptionBudget")}
    assert off["rel-jobcast-web"]["minAvailable"] == 2 and "maxUnavailable" not in off["rel-jobcast-web"]
    assert off["rel-jobcast-ws"]["minAvailable"] == "50%"
    assert "rel-jobcast-worker" not in off


def test_pods_spread_over_zones_and_nodes(case):
    for tier in TIERS:
        d = deployment(case, tier)
        constraints = pod_spec(d)["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_the_ws_rollout_replaces_one_pod_at_a_time(default):
    assert deployment(default, "ws")["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 1}


# --- probes ---------------------------------------------------------------------------------------


def test_probes_use_healthz_for_liveness_and_readyz_for_readiness(case):
    for tier in TIERS:
        container = main_container(case, tier)
        port = MAIN_PORT[tier]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["livenessProbe"] != container["readinessProbe"]


def test_ws_readiness_fails_within_one_two_second_period(default):
    probe = main_container(default, "ws")["readinessProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (2, 1)


# --- drains and grace periods -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["default-values.yaml", "autoscaling-off-values.yaml"])
def test_the_ws_grace_period_covers_prestop_drain_and_shutdown_grace(renders, name):
    r = renders[name]
    values = {"drainSeconds": 10, "shutdownGraceSeconds": 10, "preStopSleepSeconds": 5, "terminationMarginSeconds": 5}
    values.update({k: v for k, v in r.values.get("ws", {}).items() if k in values})
    container = main_container(r, "ws")
    env = env_of(container)
    assert env["JOBCAST_WS_DRAIN_SECONDS"] == str(values["drainSeconds"])
    assert env["JOBCAST_WS_SHUTDOWN_GRACE_SECONDS"] == str(values["shutdownGraceSeconds"])
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", str(values["preStopSleepSeconds"])]}}
    grace = pod_spec(deployment(r, "ws"))["terminationGracePeriodSeconds"]
    needed = values["preStopSleepSeconds"] + values["drainSeconds"] + values["shutdownGraceSeconds"]
    assert grace == needed + values["terminationMarginSeconds"] and grace > needed
    if name == "default-values.yaml":
        assert grace == 30  # docs/deploy.md: 5 + 10 + 10, so 30


def test_the_web_grace_period_covers_prestop_and_gunicorns_graceful_timeout(default):
    from jobcast.web import gunicorn_conf

    container = main_container(default, "web")
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    grace = pod_spec(deployment(default, "web"))["terminationGracePeriodSeconds"]
    assert grace > 5 + gunicorn_conf.graceful_timeout
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f'define "jobcast.web.gracefulTimeoutSeconds" -}}}}{gunicorn_conf.graceful_timeout}{{{{' in template


@pytest.mark.parametrize("name", ["default-values.yaml", "autoscaling-off-values.yaml"])
def test_the_worker_grace_period_covers_its_shutdown(renders, name):
    r = renders[name]
    shutdown = r.values.get("worker", {}).get("shutdownSeconds", 25)
    assert env_of(main_container(r, "worker"))["JOBCAST_WORKER_SHUTDOWN_SECONDS"] == str(shutdown)
    assert pod_spec(deployment(r, "worker"))["terminationGracePeriodSeconds"] >= shutdown + 10


# --- hardening -------------------------------------------------------------------------------------


def test_pods_and_containers_are_hardened(case):
    for workload in case.objects:
        if workload["kind"] not in ("Deployment", "Job", "Pod"):
            continue
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        mounts_by_volume = {v["name"]: v for v in spec.get("volumes") or []}
        for container in containers(workload):
            context = container["securityContext"]
            where = (workload["metadata"]["name"], container["name"])
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsNonRoot"] is True, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
            if workload["kind"] != "Pod":  # the test pod only reads
                assert "emptyDir" in mounts_by_volume[mounts["/tmp"]], where


def test_what_the_tiers_write_is_on_an_emptydir(default):
    """jobcast run web|worker write prometheus-client's multiprocess files under /data/metrics;
    collectstatic writes /data/static (read by the static sidecar)."""
    for tier in ("web", "worker"):
        d = deployment(default, tier)
        volumes = {v["name"]: v for v in pod_spec(d)["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in main_container(default, tier)["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/data/metrics"]]
    web = deployment(default, "web")
    collect = next(c for c in containers(web) if c["name"] == "collectstatic")
    assert collect["command"] == ["jobcast", "manage", "collectstatic", "--noinput"]
    static = next(c for c in containers(web, init=False) if c["name"] == "static")
    shared = {m["name"] for m in collect["volumeMounts"]} & {m["name"] for m in static["volumeMounts"]}
    assert shared == {"tmp", "static"} or "static" in shared


# --- configuration and secrets ---------------------------------------------------------------


def test_every_jobcast_container_gets_the_three_secrets_by_reference(case):
    existing = case.values.get("secret", {}).get("existingSecret")
    keys = {"SECRET_KEY": "SECRET_KEY", "DATABASE_URL": "DATABASE_URL", "REDIS_URL": "REDIS_URL"}
    if existing:
        keys = {"SECRET_KEY": "django-secret-key", "DATABASE_URL": "database-url", "REDIS_URL": "redis-url"}
    for workload in case.objects:
        if workload["kind"] not in ("Deployment", "Job"):
            continue
        hook = "pre-install" in hook_events(workload)
        secret = existing or ("rel-jobcast-migrate" if hook else "rel-jobcast")
        for container in containers(workload):
            if container["name"] == "static":
                continue
            env = env_of(container)
            for variable, key in keys.items():
                assert env[variable] == {"secretKeyRef": {"name": secret, "key": key}}, (workload["metadata"]["name"], container["name"])
    secrets = [s["metadata"]["name"] for s in case.of_kind("Secret")]
    if existing:
        assert secrets == []
    else:
        assert "rel-jobcast" in secrets
        assert case.get("ConfigMap", "rel-jobcast-config")["data"].keys().isdisjoint(keys)  # no secret in the ConfigMap


def test_the_secret_holds_the_urls_given(renders):
    import base64

    r = renders["ingress-tls-values.yaml"]
    data = {k: base64.b64decode(v).decode() for k, v in r.get("Secret", "rel-jobcast")["data"].items()}
    assert data == {
        "SECRET_KEY": r.values["secret"]["secretKey"],
        "DATABASE_URL": r.values["externalDatabase"]["url"],
        "REDIS_URL": r.values["externalRedis"]["url"],
    }


def test_a_generated_secret_key_is_the_same_in_the_secret_and_its_hook_copy(default):
    main = default.get("Secret", "rel-jobcast")["data"]["SECRET_KEY"]
    assert main == default.get("Secret", "rel-jobcast-migrate")["data"]["SECRET_KEY"]
    import base64

    assert len(base64.b64decode(main)) == 50


def test_a_config_change_rolls_the_pods_and_an_unrelated_change_does_not(default):
    base = values_file("default-values.yaml")
    changed = render({**base, "config": {"logLevel": "debug"}})
    secret_changed = render({**base, "secret": {"secretKey": "another"}})
    same = render({**base, "web": {"podLabels": {"team": "jobs"}}, "secret": {"secretKey": "k"}})
    same_again = render({**base, "secret": {"secretKey": "k"}})
    for tier in TIERS:
        annotations = lambda r: deployment(r, tier)["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
        assert annotations(changed)["checksum/config"] != annotations(default)["checksum/config"]
        assert annotations(secret_changed)["checksum/secret"] != annotations(same_again)["checksum/secret"]
        assert annotations(same)["checksum/config"] == annotations(same_again)["checksum/config"]
        assert annotations(same)["checksum/secret"] == annotations(same_again)["checksum/secret"]


def test_allowed_hosts_and_csrf_origins_follow_the_public_hosts(renders, default):
    config = renders["ingress-tls-values.yaml"].get("ConfigMap", "rel-jobcast-config")["data"]
    assert config["ALLOWED_HOSTS"] == "jobs.example.com,progress.example.com"
    assert config["CSRF_TRUSTED_ORIGINS"] == "https://jobs.example.com,https://progress.example.com"
    assert config["JOBCAST_MAX_BODY_BYTES"] == "5242880"
    assert config["JOBCAST_SUBMIT_RATE_PER_MINUTE"] == "120"  # config.env
    assert default.get("ConfigMap", "rel-jobcast-config")["data"]["ALLOWED_HOSTS"] == Env.model_fields["allowed_hosts"].default


# --- migrations -----------------------------------------------------------------------------------


def test_the_migration_job_is_a_pre_install_pre_upgrade_hook_after_its_config(default):
    job = default.get("Job", "rel-jobcast-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-weight"] == "0"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert containers(job)[0]["command"] == ["jobcast", "manage", "migrate", "--noinput"]
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "rel-jobcast-migrate"
    assert containers(job)[0]["envFrom"] == [{"configMapRef": {"name": "rel-jobcast-migrate"}}]
    for kind in ("ConfigMap", "Secret", "ServiceAccount"):
        needed = default.get(kind, "rel-jobcast-migrate")
        assert hook_events(needed) == {"pre-install", "pre-upgrade"}
        assert hook_weight(needed) < hook_weight(job), kind
    # The hook ConfigMap holds exactly what the release's ConfigMap holds.
    assert default.get("ConfigMap", "rel-jobcast-migrate")["data"] == default.get("ConfigMap", "rel-jobcast-config")["data"]


def test_without_helm_hooks_the_migration_job_is_plain_and_named_after_its_inputs(renders):
    r = renders["existing-secret-values.yaml"]
    jobs = r.of_kind("Job")
    assert len(jobs) == 1
    job = jobs[0]
    assert hook_events(job) == set()
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["metadata"]["name"].startswith("rel-jobcast-migrate-") and len(job["metadata"]["name"]) == len("rel-jobcast-migrate-") + 8
    assert containers(job)[0]["envFrom"] == [{"configMapRef": {"name": "rel-jobcast-config"}}]
    assert pod_spec(job)["serviceAccountName"] == "jobcast-runtime"
    assert [o for o in r.objects if hook_events(o) - {"test"}] == []
    # A new image gives a new Job (its pod template is immutable).
    other = render({**values_file("existing-secret-values.yaml"), "image": {"repository": "platform/jobcast", "tag": "9.9.9"}})
    assert other.of_kind("Job")[0]["metadata"]["name"] != job["metadata"]["name"]


def test_every_app_pod_waits_until_migrations_are_applied(case):
    waiting = case.values.get("migrations", {}).get("waitForMigrations", {}).get("enabled", True)
    for tier in TIERS:
        init = {c["name"]: c for c in pod_spec(deployment(case, tier)).get("initContainers") or []}
        if not waiting:
            assert "wait-for-migrations" not in init
            continue
        script = init["wait-for-migrations"]["command"][-1]
        assert init["wait-for-migrations"]["command"][:2] == ["sh", "-c"]
        assert "until jobcast manage migrate --check" in script and "sleep 5" in script


# --- routing ----------------------------------------------------------------------------------------


def ingress_backends(ingresses, request_path):
    """(Service, port name) of every Ingress path a request path matches."""
    hits = []
    for ingress in ingresses:
        for path in ingress["spec"]["rules"][0]["http"]["paths"]:
            if ingress_path_matches(path, request_path):
                service = path["backend"]["service"]
                hits.append((service["name"], service["port"]["name"]))
    return hits


def test_the_ingresses_route_the_app_and_never_the_operator_endpoints(renders):
    r = renders["ingress-tls-values.yaml"]
    web, ws = r.get("Ingress", "rel-jobcast-web"), r.get("Ingress", "rel-jobcast-ws")
    for ingress in (web, ws):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"] == [{"secretName": "jobcast-tls", "hosts": ["jobs.example.com", "progress.example.com"]}]
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
        assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["jobs.example.com", "progress.example.com"]
    # One Certificate per secret: cert-manager's annotation on the web Ingress only.
    assert web["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert "cert-manager.io/cluster-issuer" not in ws["metadata"]["annotations"]
    assert web["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "5242880"
    assert ws["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    assert ws["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "7200"
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" not in web["metadata"]["annotations"]
    ingresses = (web, ws)
    assert ingress_backends(ingresses, "/") == [("rel-jobcast-web", "http")]
    assert ingress_backends(ingresses, "/api/jobs/") == [("rel-jobcast-web", "http")]
    assert ingress_backends(ingresses, "/accounts/login/") == [("rel-jobcast-web", "http")]
    assert ingress_backends(ingresses, "/static/ninja/swagger-ui.css") == [("rel-jobcast-web", "static")]
    assert ingress_backends(ingresses, "/ws/jobs/abc/") == [("rel-jobcast-ws", "http")]
    for path in OPERATOR_PATHS:
        assert ingress_backends(ingresses, path) == [], path


def test_one_ingress_for_every_path_when_not_split(renders):
    r = renders["ingress-single-values.yaml"]
    [ingress] = r.of_kind("Ingress")
    assert ingress["metadata"]["name"] == "rel-jobcast"
    assert ingress["spec"]["ingressClassName"] == "gce"
    assert ingress["metadata"]["annotations"] == {"kubernetes.io/ingress.allow-http": "false"}  # no nginx ones
    assert ingress_backends([ingress], "/ws/jobs/abc/") == [("rel-jobcast-ws", "http")]
    assert ingress_backends([ingress], "/api/jobs/") == [("rel-jobcast-web", "http")]
    assert ingress_backends([ingress], "/static/x.css") == []  # no sidecar in this case
    for path in OPERATOR_PATHS:
        assert ingress_backends([ingress], path) == [], path
    merged = render({**values_file("ingress-tls-values.yaml"), "ingress": {**values_file("ingress-tls-values.yaml")["ingress"], "split": False}})
    annotations = merged.get("Ingress", "rel-jobcast")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "5242880"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"


def test_the_httproute_routes_the_same_paths_and_never_the_operator_endpoints(renders):
    route = renders["ingress-tls-values.yaml"].of_kind("HTTPRoute")[0]
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["jobs.example.com"]

    def backend(request_path):
        return [
            (ref["name"], ref["port"])
            for rule in route["spec"]["rules"]
            if any(route_path_matches(m, request_path) for m in rule["matches"])
            for ref in rule["backendRefs"]
        ]

    assert backend("/ws/jobs/abc/") == [("rel-jobcast-ws", 8002)]
    assert backend("/api/jobs/") == [("rel-jobcast-web", 8001)]
    assert backend("/") == [("rel-jobcast-web", 8001)]
    assert backend("/static/x.css") == [("rel-jobcast-web", 8080)]
    for path in OPERATOR_PATHS:
        assert backend(path) == [], path
    ws_rule = next(rule for rule in route["spec"]["rules"] if rule["backendRefs"][0]["name"] == "rel-jobcast-ws")
    assert ws_rule["timeouts"] == {"request": "0s"}


def test_services_expose_http_and_a_separate_metrics_port(default):
    web = {p["name"]: p for p in default.get("Service", "rel-jobcast-web")["spec"]["ports"]}
    ws = {p["name"]: p for p in default.get("Service", "rel-jobcast-ws")["spec"]["ports"]}
    worker = {p["name"]: p for p in default.get("Service", "rel-jobcast-worker")["spec"]["ports"]}
    assert set(web) == {"http", "metrics", "static"} and set(ws) == {"http", "metrics"} and set(worker) == {"metrics"}
    assert web["http"]["port"] == 8001 and ws["http"]["port"] == 8002
    assert {web["metrics"]["port"], ws["metrics"]["port"], worker["metrics"]["port"]} == {9101}


# --- monitoring --------------------------------------------------------------------------------------


def test_the_service_monitor_scrapes_the_metrics_port_as_the_compose_jobs(renders):
    r = renders["monitoring-values.yaml"]
    [monitor] = r.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["relabelings"] == [{
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
        "targetLabel": "job",
        "replacement": "jobcast-$1",
    }]
    selected = [s["metadata"]["name"] for s in r.of_kind("Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert sorted(selected) == [f"rel-jobcast-{t}" for t in sorted(TIERS)]
    compose_jobs = {c["job_name"] for c in yaml.safe_load((CHART.parents[2] / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert compose_jobs == {f"jobcast-{t}" for t in TIERS}


def test_the_pod_monitor_alternative(renders):
    r = renders["podmonitor-values.yaml"]
    assert r.of_kind("ServiceMonitor") == []
    [monitor] = r.of_kind("PodMonitor")
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http", "metrics"]
    assert "rel-jobcast-worker" not in [s["metadata"]["name"] for s in r.of_kind("Service")]


def test_the_prometheus_rule_embeds_the_projects_alerts_file(renders):
    """The PrometheusRule is files/prometheus/alerts.yml with the values' overrides applied, and
    nothing else changed (ci/monitoring-values.yaml overrides three alerts and both URLs)."""
    [rule] = renders["monitoring-values.yaml"].of_kind("PrometheusRule")
    alerts = yaml.safe_load((CHART / "files/prometheus/alerts.yml").read_text())
    [group] = alerts["groups"]
    rendered = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert [g["name"] for g in rule["spec"]["groups"]] == ["jobcast"]
    assert set(rendered) == {r["alert"] for r in group["rules"]} - {"JobcastEventClockSkew"}  # enabled: false
    for original in group["rules"]:
        if original["alert"] not in rendered:
            continue
        got, want = rendered[original["alert"]], copy.deepcopy(original)
        want["annotations"]["dashboard_url"] = want["annotations"]["dashboard_url"].replace(
            "http://127.0.0.1:3000", "https://grafana.example.com")
        want["annotations"]["runbook_url"] = "https://git.example.com/jobcast/blob/main/" + want["annotations"]["runbook_url"]
        if original["alert"] == "JobcastQueueBacklog":
            assert original["expr"].endswith("> 100") and got["expr"].endswith("> 500")
            want["expr"], want["for"] = original["expr"].replace("> 100", "> 500"), "30m"
        if original["alert"] == "JobcastWebErrorRatioHigh":
            want["labels"]["severity"] = "critical"
        assert got == want, original["alert"]


def test_without_overrides_the_prometheus_rule_is_the_file(monitoring_without_overrides):
    [rule] = monitoring_without_overrides.of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((CHART / "files/prometheus/alerts.yml").read_text())["groups"]


@pytest.mark.parametrize("alerts, message", [
    ({"JobcastTierAbsent": {"threshold": 3}}, "JobcastTierAbsent.threshold: this alert has no threshold"),
    ({"JobcastQueueBaklog": {"threshold": 3}}, "JobcastQueueBaklog: no such alert"),
])
def test_an_override_the_rules_cannot_take_fails_the_render(alerts, message):
    values = copy.deepcopy(values_file("monitoring-values.yaml"))
    values["metrics"]["prometheusRule"]["alerts"] = alerts
    with pytest.raises(Exception, match=message):
        render(values)


def served_metric_names() -> set[str]:
    """Every sample name jobcast's tiers can serve: the default registry (prometheus-client's metrics
    and the ws tier's loop metrics) and the worker's scrape-time collectors."""
    from prometheus_client import REGISTRY

    from jobcast import metrics

    class FakeRedis:
        def pipeline(self, transaction=False):
            return self

        def llen(self, *args):
            pass

        lindex = llen

        def execute(self):
            return [0, None]

    metrics.prebind_ws()  # what the ws tier binds at start-up
    collectors = [REGISTRY, metrics.QueueCollector(FakeRedis(), "jobcast"),
                  metrics.WorkerCollector(lambda: True, lambda: 2, lambda: 0)]
    return {sample.name for c in collectors for family in c.collect() for sample in family.samples} | {
        family.name for c in collectors for family in c.collect()}


def test_the_alerts_and_the_dashboard_use_only_metrics_jobcast_serves():
    import re

    from jobcast import metrics

    # A labelled family has no sample until it has a child.
    metrics.prebind_kinds(["demo.count"])
    metrics.http_requests.labels("/", "GET", "200")
    metrics.http_request_duration.labels("/", "GET")
    metrics.job_duration.labels("demo.count", "succeeded")
    metrics.job_queue_wait.labels("demo.count")
    served = served_metric_names() | {"up"}
    text = (CHART / "files/prometheus/alerts.yml").read_text() + (CHART / "files/grafana/jobcast-overview.json").read_text()
    used = set(re.findall(r"\b(jobcast_[a-z_]+|up)\b(?=[{\[(\s)])", text))
    assert used and used <= served, used - served


def test_docs_operations_lists_every_metric_jobcast_serves():
    import re

    from jobcast import metrics

    metrics.prebind_kinds(["demo.count"])
    metrics.http_requests.labels("/", "GET", "200")
    metrics.http_request_duration.labels("/", "GET")
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in served_metric_names()}
    ours = {name for name in families if name.startswith("jobcast_")}
    ours = {name for name in ours if not any(name == other + suffix for other in ours for suffix in ("_bucket", "_sum", "_count"))}
    documented = set(re.findall(r"^\| `(jobcast_\w+)` \|", (CHART.parents[2] / "docs/operations.md").read_text(), flags=re.MULTILINE))
    served = {name for name in ours if name + "_total" not in ours}
    assert documented == served, (served - documented, documented - served)


def test_the_grafana_dashboard_configmap_is_labelled_for_the_sidecar(renders):
    cm = renders["monitoring-values.yaml"].get("ConfigMap", "rel-jobcast-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "jobcast"
    dashboard = json.loads(cm["data"]["jobcast-overview.json"])
    assert dashboard == json.loads((CHART / "files/grafana/jobcast-overview.json").read_text())
    assert dashboard["uid"] == "jobcast-overview" and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["type"] == "row" or (panel["targets"] and all(t["expr"] for t in panel["targets"]))


def test_monitoring_objects_are_off_by_default(default):
    kinds = {o["kind"] for o in default.objects}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy", "Ingress", "HTTPRoute"}


# --- NetworkPolicy ---------------------------------------------------------------------------------


def test_network_policies_admit_only_the_ingress_controller_prometheus_and_the_tiers(renders):
    r = renders["networkpolicy-values.yaml"]
    policies = {p["metadata"]["name"]: p["spec"] for p in r.of_kind("NetworkPolicy")}
    assert set(policies) == {f"rel-jobcast-{n}" for n in ("web", "ws", "worker", "redis", "postgresql", "egress")}
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}
    for tier in ("web", "ws"):
        spec = policies[f"rel-jobcast-{tier}"]
        assert spec["podSelector"]["matchLabels"] == deployment(r, tier)["spec"]["selector"]["matchLabels"]
        assert spec["ingress"][0]["from"] == [controller]
        peers = [peer for rule in spec["ingress"] for peer in rule["from"]]
        assert all("namespaceSelector" in p or p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test" for p in peers)
    worker = policies["rel-jobcast-worker"]
    assert [p["port"] for rule in worker["ingress"] for p in rule["ports"]] == ["metrics"]
    redis = policies["rel-jobcast-redis"]
    assert redis["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "jobcast-redis"}
    clients = redis["ingress"][0]["from"][0]["podSelector"]
    admitted = {t: selects(clients, pod_labels(deployment(r, t))) for t in TIERS}
    assert admitted == {"web": True, "ws": True, "worker": True}
    assert selects(clients, pod_labels(r.of_kind("Job")[0]))  # the migration Job
    assert not selects(clients, pod_labels(r.of_kind("Pod")[0]))  # not the helm test pod
    assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    egress = policies["rel-jobcast-egress"]
    assert egress["policyTypes"] == ["Egress"]
    assert {"port": 53, "protocol": "UDP"} in egress["egress"][0]["ports"]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in [peer for rule in egress["egress"] for peer in rule.get("to", [])]


# --- helm test and NOTES ------------------------------------------------------------------------------


def test_the_helm_test_pod_checks_readyz_of_web_and_ws(default):
    [pod] = default.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[-2:] == ["http://rel-jobcast-web:8001/readyz", "http://rel-jobcast-ws:8002/readyz"]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_tell_how_to_reach_it(default, renders):
    assert "kubectl -n jobs port-forward svc/rel-jobcast-web 8001:8001" in default.notes
    notes = renders["ingress-tls-values.yaml"].notes
    assert "https://jobs.example.com/" in notes and "wss://jobs.example.com/ws/" in notes
    assert "jobcast token" in notes and "helm test rel" in notes


# --- stream tokens (docs/integration.md) ------------------------------------------------------


def test_stream_token_keys_reach_every_container_and_the_secret_stays_out_of_the_configmap():
    import base64

    base = values_file("default-values.yaml")
    key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    tokens = {"jwtSecret": "shared-with-the-product", "jwtPublicKey": key, "audience": "shop", "issuer": "https://shop.example"}
    r = render({**base, "streamTokens": tokens})
    secret = {k: base64.b64decode(v).decode() for k, v in r.get("Secret", "rel-jobcast")["data"].items()}
    assert secret["JOBCAST_JWT_SECRET"] == "shared-with-the-product"
    config = r.get("ConfigMap", "rel-jobcast-config")["data"]
    assert config["JOBCAST_JWT_PUBLIC_KEY"] == key
    assert (config["JOBCAST_JWT_AUDIENCE"], config["JOBCAST_JWT_ISSUER"]) == ("shop", "https://shop.example")
    assert "shared-with-the-product" not in json.dumps(config)
    for tier in TIERS:
        reference = env_of(main_container(r, tier))["JOBCAST_JWT_SECRET"]
        assert reference == {"secretKeyRef": {"name": "rel-jobcast", "key": "JOBCAST_JWT_SECRET", "optional": True}}


def test_without_stream_tokens_nothing_is_set_but_the_default_audience(default):
    assert "JOBCAST_JWT_SECRET" not in default.get("Secret", "rel-jobcast")["data"]
    config = default.get("ConfigMap", "rel-jobcast-config")["data"]
    assert config["JOBCAST_JWT_AUDIENCE"] == Env.model_fields["jobcast_jwt_audience"].default
    assert "JOBCAST_JWT_PUBLIC_KEY" not in config and "JOBCAST_JWT_ISSUER" not in config


def test_an_existing_secret_may_hold_the_stream_token_secret_under_its_own_key():
    values = {**values_file("existing-secret-values.yaml")}
    values["secret"] = {**values["secret"], "keys": {**values["secret"]["keys"], "jwtSecret": "product-jwt"}}
    r = render(values)
    reference = env_of(main_container(r, "ws"))["JOBCAST_JWT_SECRET"]
    assert reference == {"secretKeyRef": {"name": "jobcast-credentials", "key": "product-jwt", "optional": True}}
