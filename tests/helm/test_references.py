"""What a cluster would only catch late, checked on every render — and each checker shown to
catch a deliberately broken render (tests/helm/manifests.py has the checkers)."""

from __future__ import annotations

from jobcast.env import Env
from tests.helm.manifests import (
    autoscaler_problems,
    containers,
    pod_spec,
    port_problems,
    reference_problems,
    render,
    service_link_problems,
    service_selector_problems,
    values_file,
    workloads,
)

READ = {name.upper() for name in Env.model_fields}


def external_secrets(render) -> set[str]:
    name = render.values.get("secret", {}).get("existingSecret")
    return {name} if name else set()


def test_every_service_and_budget_selects_exactly_one_deployment(case):
    assert service_selector_problems(case) == []


def test_every_secret_and_configmap_reference_resolves(case):
    assert reference_problems(case, external_secrets(case)) == []


def test_every_probe_service_ingress_route_and_monitor_port_exists(case):
    assert port_problems(case) == []


def test_every_autoscaler_targets_a_rendered_deployment(case):
    assert autoscaler_problems(case) == []


# --- the checkers catch what they are for ----------------------------------------------------


def test_a_service_selector_matching_no_deployment_is_caught(default):
    broken = default.broken()
    broken.get("Service", "rel-jobcast-ws")["spec"]["selector"]["app.kubernetes.io/component"] = "websocket"
    assert any("rel-jobcast-ws" in problem for problem in service_selector_problems(broken))


def test_a_service_selector_matching_two_deployments_is_caught(default):
    broken = default.broken()
    del broken.get("Service", "rel-jobcast-web")["spec"]["selector"]["app.kubernetes.io/component"]
    problems = service_selector_problems(broken)
    assert any("rel-jobcast-web" in problem and "rel-jobcast-worker" in problem for problem in problems)


def test_a_secret_key_the_secret_lacks_is_caught(default):
    broken = default.broken()
    web = broken.get("Deployment", "rel-jobcast-web")
    env = next(e for e in containers(web, init=False)[0]["env"] if e["name"] == "REDIS_URL")
    env["valueFrom"]["secretKeyRef"]["key"] = "REDIS_URI"
    assert any("no key REDIS_URI" in problem for problem in reference_problems(broken))


def test_a_configmap_that_is_not_rendered_is_caught(default):
    broken = default.broken()
    broken.objects = [o for o in broken.objects if not (o["kind"] == "ConfigMap" and o["metadata"]["name"] == "rel-jobcast-config")]
    assert any("rel-jobcast-config is not rendered" in problem for problem in reference_problems(broken))


def test_an_existing_secret_counts_only_when_the_values_name_it(renders):
    render = renders["existing-secret-values.yaml"]
    assert reference_problems(render, {"jobcast-credentials"}) == []
    assert any("jobcast-credentials is not rendered" in problem for problem in reference_problems(render, set()))


def test_a_hook_using_a_release_secret_is_caught(default):
    """On a first install the release's own Secret does not exist yet when pre-install hooks run."""
    broken = default.broken()
    job = broken.get("Job", "rel-jobcast-migrate")
    for env in containers(job)[0]["env"]:
        env["valueFrom"]["secretKeyRef"]["name"] = "rel-jobcast"
    assert any("does not exist yet" in problem for problem in reference_problems(broken))


def test_a_hook_resource_created_after_the_job_is_caught(default):
    broken = default.broken()
    broken.get("ConfigMap", "rel-jobcast-migrate")["metadata"]["annotations"]["helm.sh/hook-weight"] = "5"
    assert any("does not exist yet" in problem for problem in reference_problems(broken))


def test_a_probe_on_an_undeclared_port_is_caught(default):
    broken = default.broken()
    worker = broken.get("Deployment", "rel-jobcast-worker")
    containers(worker, init=False)[0]["readinessProbe"]["httpGet"]["port"] = "http"
    assert any("readinessProbe port 'http'" in problem for problem in port_problems(broken))


def test_a_service_target_port_no_container_declares_is_caught(default):
    broken = default.broken()
    broken.get("Service", "rel-jobcast-worker")["spec"]["ports"][0]["targetPort"] = 9102
    assert any("targetPort 9102" in problem for problem in port_problems(broken))


def test_an_ingress_to_a_missing_service_port_is_caught(renders):
    broken = renders["ingress-tls-values.yaml"].broken()
    path = broken.get("Ingress", "rel-jobcast-ws")["spec"]["rules"][0]["http"]["paths"][0]
    path["backend"]["service"]["port"] = {"name": "websocket"}
    assert any("has no port 'websocket'" in problem for problem in port_problems(broken))


def test_a_monitor_on_a_missing_port_is_caught(renders):
    broken = renders["monitoring-values.yaml"].broken()
    broken.of_kind("ServiceMonitor")[0]["spec"]["endpoints"][0]["port"] = "prometheus"
    assert any("port prometheus" in problem for problem in port_problems(broken))
    broken = renders["podmonitor-values.yaml"].broken()
    broken.of_kind("PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]["port"] = "prometheus"
    assert any("port prometheus" in problem for problem in port_problems(broken))


def test_an_autoscaler_targeting_no_deployment_is_caught(default):
    broken = default.broken()
    broken.get("HorizontalPodAutoscaler", "rel-jobcast-ws")["spec"]["scaleTargetRef"]["name"] = "rel-jobcast-websocket"
    assert any("not a rendered Deployment" in problem for problem in autoscaler_problems(broken))


def test_a_deployment_fighting_its_autoscaler_over_replicas_is_caught(default):
    broken = default.broken()
    broken.get("Deployment", "rel-jobcast-web")["spec"]["replicas"] = 2
    assert any("sets replicas" in problem for problem in autoscaler_problems(broken))


def test_no_service_link_variable_reaches_jobcast_even_in_a_release_named_jobcast(case):
    """A release named `jobcast` has Services jobcast-web and jobcast-ws: with Service links the
    kubelet would set JOBCAST_WEB_PORT=tcp://… and JOBCAST_WS_PORT=tcp://… in every pod, and
    jobcast would refuse to start on those values."""
    named_jobcast = render(case.values, case.name, release="jobcast")
    assert service_link_problems(named_jobcast, READ) == []
    assert all(pod_spec(w)["enableServiceLinks"] is False for w in workloads(named_jobcast))


def test_service_links_clashing_with_jobcasts_variables_are_caught():
    broken = render(values_file("default-values.yaml"), release="jobcast").broken()
    pod_spec(broken.get("Deployment", "jobcast-worker"))["enableServiceLinks"] = True
    problems = service_link_problems(broken, READ)
    assert problems and "JOBCAST_WEB_PORT" in problems[0] and "JOBCAST_WS_PORT" in problems[0]
