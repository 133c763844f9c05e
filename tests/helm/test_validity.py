"""The chart lints, renders for every ci/ values file, and every object it renders is valid:
built-in kinds against the Kubernetes API schemas (kubernetes-validate, strict), CRDs against
the JSON schemas in tests/helm/crd_schemas/ (docs/kubernetes.md says what those cover)."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml

from tests.helm.manifests import CHART, ci_values_files, values_file

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.29", "1.37")
CRD_SCHEMAS = Path(__file__).with_name("crd_schemas")
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute.json",
}

# kubernetes-validate reads its (large) schema files from disk on every call: read each once.
kubernetes_validate.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.schema_contents)


@functools.lru_cache(maxsize=None)
def crd_validator(file_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((CRD_SCHEMAS / file_name).read_text()))


def validation_errors(obj: dict) -> list[str]:
    """Why this object would be refused by the API server's schema (empty when valid)."""
    key = (obj["apiVersion"], obj["kind"])
    name = f"{obj['kind']} {obj['metadata']['name']}"
    if key in CRD_KINDS:
        return [f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in crd_validator(CRD_KINDS[key]).iter_errors(obj)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name} (Kubernetes {version}): {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{name}: {error.message}")
    return errors


def test_the_ci_folder_holds_the_cases_the_issue_names():
    assert {
        "default-values.yaml",
        "autoscaling-off-values.yaml",
        "monitoring-values.yaml",
        "existing-secret-values.yaml",
        "networkpolicy-values.yaml",
        "ingress-tls-values.yaml",
        "ingress-single-values.yaml",
    } <= set(ci_values_files())


@pytest.mark.parametrize("values_name", ci_values_files())
def test_helm_lint_reports_no_error_or_warning(values_name):
    report = helm_python.lint(CHART, values_file(values_name), strict=True, kube_version="v1.29.0")
    assert report["errors"] == []
    # Severity 1 is "info" (only: "icon is recommended"); 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_without_values_only_warns_about_the_required_urls():
    """helm lint renders with the chart's own values, where the two URLs are required but empty."""
    report = helm_python.lint(CHART)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 3] == []


def test_every_object_of_every_case_validates(case):
    problems = [error for obj in case.objects for error in validation_errors(obj)]
    assert problems == []


def test_every_crd_kind_rendered_has_a_schema_here(renders):
    kinds = {(obj["apiVersion"], obj["kind"]) for render in renders.values() for obj in render.objects}
    built_in = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}
    assert {kind for kind in kinds if kind[0] not in built_in} == set(CRD_KINDS)


def test_strict_validation_refuses_an_unknown_or_mistyped_field(default):
    deployment = copy.deepcopy(default.get("Deployment", "rel-jobcast-web"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    assert any("readinesProbe" in error for error in validation_errors(deployment))
    deployment = copy.deepcopy(default.get("Deployment", "rel-jobcast-web"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    assert validation_errors(deployment)


def test_crd_schemas_refuse_a_broken_object(renders):
    monitor = copy.deepcopy(renders["monitoring-values.yaml"].of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert validation_errors(monitor)
    rule = copy.deepcopy(renders["monitoring-values.yaml"].of_kind("PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    assert validation_errors(rule)
    route = copy.deepcopy(renders["ingress-tls-values.yaml"].of_kind("HTTPRoute")[0])
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"  # Ingress's word, not Gateway API's
    assert validation_errors(route)


def test_every_object_is_namespaced_and_labelled(case):
    for obj in case.objects:
        metadata = obj["metadata"]
        dashboard_namespace = case.values.get("metrics", {}).get("grafanaDashboard", {}).get("namespace")
        expected = dashboard_namespace if metadata["name"].endswith("-dashboard") and dashboard_namespace else "jobs"
        assert metadata["namespace"] == expected, metadata["name"]
        labels = metadata.get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, (obj["kind"], metadata["name"], key)
        assert len(metadata["name"]) <= 63, metadata["name"]


def test_rendered_yaml_has_no_blank_lines_with_spaces():
    """A cosmetic check that keeps `helm template` output clean (an empty include leaves "  \\n")."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values_file("networkpolicy-values.yaml"), name="rel", namespace="jobs")
    offenders = [path for path, text in manifests.items() if any(line.strip() == "" and line for line in text.splitlines())]
    assert offenders == []
    for path, text in manifests.items():
        if not path.endswith("NOTES.txt"):
            list(yaml.safe_load_all(text))


def test_helm_lint_reports_a_broken_template(tmp_path):
    """The lint above can fail: a template with a syntax error is reported as an error."""
    import shutil

    chart = tmp_path / "jobcast"
    shutil.copytree(CHART, chart)
    deployment = chart / "templates" / "ws-deployment.yaml"
    deployment.write_text(deployment.read_text().replace("{{- $tier := .Values.ws }}", "{{- $tier := .Values.ws "))
    report = helm_python.lint(chart, values_file("default-values.yaml"), strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] == 3]


def test_the_packaged_chart_renders_like_the_folder(tmp_path, default):
    """`helm package` keeps what the templates read (files/, ci/ is harmless), so an installed
    archive renders the same objects as the folder the tests use."""
    archive = helm_python.package(CHART, destination=tmp_path)
    with helm_python.Chart.load(archive) as chart:
        manifests = chart.render(values_file("default-values.yaml"), name="rel", namespace="jobs", is_install=True)
        names = sorted(
            (doc["kind"], doc["metadata"]["name"])
            for path, text in manifests.items() if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc
        )
        assert names == sorted((obj["kind"], obj["metadata"]["name"]) for obj in default.objects)
        assert {f["name"] for f in chart.files} >= {"files/prometheus/alerts.yml", "files/grafana/jobcast-overview.json"}
