"""Rendering deploy/helm/jobcast with the real Helm engine, and the checks a cluster would make late.

Helm comes from the helm-python-sdk wheel (Helm v4's Go library behind a C ABI; no `helm`
binary). Each checker returns a list of problems (empty when the render is sound), so the
tests can show that it catches a deliberately broken render as well as pass a good one.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "jobcast"
CI_VALUES = CHART / "ci"
RELEASE, NAMESPACE = "rel", "jobs"
WORKLOAD_KINDS = ("Deployment", "Job", "Pod")


@dataclass
class Render:
    """One `helm template` of the chart: its objects (hooks and test pods included) and NOTES.txt."""

    name: str
    values: dict
    objects: list[dict]
    notes: str
    sources: dict[int, str] = field(default_factory=dict)  # id(object) -> template path

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [obj for obj in self.objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
        assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
        return matches[0]

    def broken(self) -> "Render":
        """A deep copy to break on purpose."""
        return Render(self.name, copy.deepcopy(self.values), copy.deepcopy(self.objects), self.notes)


def values_file(name: str) -> dict:
    return yaml.safe_load((CI_VALUES / name).read_text()) or {}


def ci_values_files() -> list[str]:
    return sorted(path.name for path in CI_VALUES.glob("*-values.yaml"))


@functools.lru_cache(maxsize=None)
def _chart():
    import helm_python

    return helm_python.Chart.load(CHART)


def render(values: dict | None, name: str = "inline", release: str = RELEASE) -> Render:
    """Render the chart as `helm install --dry-run` would (offline: `lookup` finds nothing)."""
    manifests = _chart().render(copy.deepcopy(values) if values else None, name=release, namespace=NAMESPACE,
                                is_install=True)
    objects, sources, notes = [], {}, ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append(document)
                sources[id(document)] = path
    return Render(name, values or {}, objects, notes, sources)


# --- what the pods of a workload look like ------------------------------------------------


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def containers(obj: dict, init: bool = True) -> list[dict]:
    spec = pod_spec(obj)
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def workloads(render: Render) -> list[dict]:
    return [obj for obj in render.objects if obj["kind"] in WORKLOAD_KINDS]


def selects(selector: dict, labels: dict) -> bool:
    """Does a Service-style selector (a label map) or a LabelSelector match these labels?"""
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
    else:
        match_labels, expressions = selector, []
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in expressions:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def hook_events(obj: dict) -> set[str]:
    hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return {event.strip() for event in hook.split(",") if event.strip()}


def hook_weight(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))


# --- the checks -----------------------------------------------------------------------------


def service_selector_problems(render: Render) -> list[str]:
    """Every Service's selector matches the pod labels of exactly one Deployment."""
    problems = []
    deployments = render.of_kind("Deployment")
    for service in render.of_kind("Service"):
        selector = service["spec"].get("selector") or {}
        matched = [d["metadata"]["name"] for d in deployments if selector and selects(selector, pod_labels(d))]
        if len(matched) != 1:
            problems.append(f"Service {service['metadata']['name']}: selector {selector} matches Deployments {matched}")
    for budget in render.of_kind("PodDisruptionBudget"):
        selector = budget["spec"]["selector"]
        matched = [d["metadata"]["name"] for d in deployments if selects(selector, pod_labels(d))]
        if len(matched) != 1:
            problems.append(f"PodDisruptionBudget {budget['metadata']['name']}: selector matches Deployments {matched}")
    return problems


def reference_problems(render: Render, external_secrets: set[str] = frozenset()) -> list[str]:
    """Every secretKeyRef/configMapKeyRef (and envFrom, and configMap/secret volume) names an object
    the chart renders, with that key, or a Secret the values say exists (`external_secrets`).

    A pre-install hook's pod may only use objects that exist before it runs: external ones, or
    hooks of the same events with a lower weight (release objects are created after pre-install hooks).
    """
    rendered = {}
    for obj in render.objects:
        if obj["kind"] in ("Secret", "ConfigMap"):
            keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
            rendered[(obj["kind"], obj["metadata"]["name"])] = (keys, obj)
    problems = []

    def check(workload: dict, where: str, kind: str, name: str, key: str | None, optional: bool = False) -> None:
        if kind == "Secret" and name in external_secrets:
            return
        found = rendered.get((kind, name))
        if found is None:
            if not optional:
                problems.append(f"{where}: {kind} {name} is not rendered")
            return
        keys, target = found
        if key is not None and key not in keys and not optional:  # optional: Kubernetes leaves the variable unset
            problems.append(f"{where}: {kind} {name} has no key {key} (it has {sorted(keys)})")
        events = hook_events(workload)
        if events & {"pre-install", "pre-upgrade"}:
            target_events = hook_events(target)
            if not events <= target_events or hook_weight(target) >= hook_weight(workload):
                problems.append(
                    f"{where}: {kind} {name} does not exist yet when the {sorted(events)} hook runs "
                    f"(its hooks: {sorted(target_events) or 'none'}, weight {hook_weight(target)})"
                )

    for workload in workloads(render):
        label = f"{workload['kind']} {workload['metadata']['name']}"
        spec = pod_spec(workload)
        for container in containers(workload):
            where = f"{label} container {container['name']}"
            for env in container.get("env") or []:
                source = env.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    check(workload, f"{where} env {env['name']}", "Secret", ref["name"], ref["key"], ref.get("optional", False))
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    check(workload, f"{where} env {env['name']}", "ConfigMap", ref["name"], ref["key"], ref.get("optional", False))
            for env_from in container.get("envFrom") or []:
                if "secretRef" in env_from:
                    check(workload, f"{where} envFrom", "Secret", env_from["secretRef"]["name"], None)
                if "configMapRef" in env_from:
                    check(workload, f"{where} envFrom", "ConfigMap", env_from["configMapRef"]["name"], None)
        for volume in spec.get("volumes") or []:
            if "configMap" in volume:
                check(workload, f"{label} volume {volume['name']}", "ConfigMap", volume["configMap"]["name"], None)
            if "secret" in volume:
                check(workload, f"{label} volume {volume['name']}", "Secret", volume["secret"]["secretName"], None)
    return problems


def _declared_ports(container: dict) -> tuple[set[str], set[int]]:
    ports = container.get("ports") or []
    return {p["name"] for p in ports if "name" in p}, {p["containerPort"] for p in ports}


def _port_declared(port, names: set[str], numbers: set[int]) -> bool:
    return port in names if isinstance(port, str) else port in numbers


def port_problems(render: Render) -> list[str]:
    """Probes and Service targetPorts name ports the containers declare; Ingress, HTTPRoute and
    ServiceMonitor ports exist on their Services; PodMonitor ports on the selected pods."""
    problems = []
    for workload in workloads(render):
        for container in containers(workload):
            names, numbers = _declared_ports(container)
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(probe_name)
                if not probe:
                    continue
                action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                if action and not _port_declared(action["port"], names, numbers):
                    problems.append(
                        f"{workload['kind']} {workload['metadata']['name']} container {container['name']} "
                        f"{probe_name} port {action['port']!r} is not a port it declares"
                    )
    services = {service["metadata"]["name"]: service for service in render.of_kind("Service")}
    deployments = render.of_kind("Deployment")
    for service in services.values():
        selector = service["spec"].get("selector") or {}
        pods = [d for d in deployments if selector and selects(selector, pod_labels(d))]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for deployment in pods:
                declared = [_declared_ports(c) for c in containers(deployment, init=False)]
                if not any(_port_declared(target, names, numbers) for names, numbers in declared):
                    problems.append(
                        f"Service {service['metadata']['name']} port {port.get('name')} targetPort {target!r} "
                        f"is declared by no container of Deployment {deployment['metadata']['name']}"
                    )

    def service_port(where: str, name: str, port) -> None:
        service = services.get(name)
        if service is None:
            problems.append(f"{where}: Service {name} is not rendered")
            return
        ports = service["spec"]["ports"]
        if not any((p.get("name") == port) if isinstance(port, str) else (p["port"] == port) for p in ports):
            problems.append(f"{where}: Service {name} has no port {port!r}")

    for ingress in render.of_kind("Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                port = backend["port"].get("name", backend["port"].get("number"))
                service_port(f"Ingress {ingress['metadata']['name']} path {path['path']}", backend["name"], port)
    for route in render.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule.get("backendRefs", []):
                if ref.get("kind", "Service") == "Service":
                    if "port" not in ref:
                        problems.append(f"HTTPRoute {route['metadata']['name']}: backendRef {ref['name']} has no port")
                    else:
                        service_port(f"HTTPRoute {route['metadata']['name']}", ref["name"], ref["port"])
    for monitor in render.of_kind("ServiceMonitor"):
        selected = [s for s in services.values() if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not selected:
            problems.append(f"ServiceMonitor {monitor['metadata']['name']} selects no Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if not any(p.get("name") == endpoint["port"] for s in selected for p in s["spec"]["ports"]):
                problems.append(f"ServiceMonitor {monitor['metadata']['name']}: no selected Service has port {endpoint['port']}")
    for monitor in render.of_kind("PodMonitor"):
        selected = [d for d in deployments if selects(monitor["spec"]["selector"], pod_labels(d))]
        if not selected:
            problems.append(f"PodMonitor {monitor['metadata']['name']} selects no pods")
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            if not any(endpoint["port"] in _declared_ports(c)[0] for d in selected for c in containers(d, init=False)):
                problems.append(f"PodMonitor {monitor['metadata']['name']}: no selected pod has port {endpoint['port']}")
    return problems


def autoscaler_problems(render: Render) -> list[str]:
    """Every HPA's scaleTargetRef names a rendered Deployment, which then leaves `replicas` to it."""
    problems = []
    deployments = {d["metadata"]["name"]: d for d in render.of_kind("Deployment")}
    targeted = []
    for hpa in render.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = deployments.get(ref["name"])
        if ref.get("kind") != "Deployment" or ref.get("apiVersion") != "apps/v1" or target is None:
            problems.append(f"HPA {hpa['metadata']['name']}: scaleTargetRef {ref} is not a rendered Deployment")
            continue
        targeted.append(ref["name"])
        if "replicas" in target["spec"]:
            problems.append(f"Deployment {ref['name']} sets replicas although HPA {hpa['metadata']['name']} scales it")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            problems.append(f"HPA {hpa['metadata']['name']}: minReplicas > maxReplicas")
    duplicates = {name for name in targeted if targeted.count(name) > 1}
    if duplicates:
        problems.append(f"Deployments scaled by more than one HPA: {sorted(duplicates)}")
    return problems


def service_link_variables(service: dict) -> set[str]:
    """The variables the kubelet sets in a pod for a Service of its namespace (enableServiceLinks)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in service["spec"]["ports"]:
        protocol = port.get("protocol", "TCP")
        base = f"{prefix}_PORT_{port['port']}_{protocol}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
        if port.get("name"):
            names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def service_link_problems(render: Render, read: set[str]) -> list[str]:
    """No pod gets a Service-link variable that jobcast reads (`read`: the names jobcast.env.Env knows)."""
    problems = []
    links = set().union(*(service_link_variables(s) for s in render.of_kind("Service"))) if render.of_kind("Service") else set()
    for workload in workloads(render):
        if pod_spec(workload).get("enableServiceLinks", True) is False:
            continue
        clashes = sorted(links & read)
        if clashes:
            problems.append(f"{workload['kind']} {workload['metadata']['name']}: Service links set {clashes}, which jobcast reads")
    return problems


def all_problems(render: Render, external_secrets: set[str] = frozenset()) -> list[str]:
    return [
        *service_selector_problems(render),
        *reference_problems(render, external_secrets),
        *port_problems(render),
        *autoscaler_problems(render),
    ]


# --- routing: what a request path reaches ----------------------------------------------------


def ingress_path_matches(path_rule: dict, request_path: str) -> bool:
    """Kubernetes Ingress matching: Exact is string equality; Prefix matches whole path elements."""
    path = path_rule["path"]
    if path_rule["pathType"] == "Exact":
        return request_path == path
    prefix = [part for part in path.split("/") if part]
    request = [part for part in request_path.split("/") if part]
    return request[: len(prefix)] == prefix


def route_path_matches(match: dict, request_path: str) -> bool:
    """Gateway API matching: Exact, or PathPrefix by whole path elements."""
    path = match.get("path", {"type": "PathPrefix", "value": "/"})
    if path["type"] == "Exact":
        return request_path == path["value"]
    return ingress_path_matches({"path": path["value"], "pathType": "Prefix"}, request_path)
