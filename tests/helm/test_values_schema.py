"""values.schema.json refuses bad values with a message naming the key; missing inputs fail the render clearly."""

from __future__ import annotations

import json
from pathlib import Path

import helm_python
import jsonschema
import pytest
import yaml

from tests.helm.manifests import CHART, render, values_file

BAD = Path(__file__).with_name("bad_values")


def refusal(values: dict) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    return str(caught.value)


def test_the_schema_is_valid_json_schema_and_closes_the_top_level():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


def test_the_schema_accepts_the_charts_own_values_and_every_ci_file():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    with helm_python.Chart.load(CHART) as chart:
        for path in sorted((CHART / "ci").glob("*-values.yaml")):
            chart.validate_schema(yaml.safe_load(path.read_text()))


def test_a_bad_values_file_is_refused_naming_each_mistake():
    message = refusal(yaml.safe_load((BAD / "typos-values.yaml").read_text()))
    assert "additional properties 'replicas' not allowed" in message
    assert "at '/web/replicaCount': got string, want integer" in message
    assert "/ws/autoscaling/metric" in message


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"web": {"autoscaling": {"enabled": "yes"}}}, "at '/web/autoscaling/enabled': got string, want boolean"),
        ({"ws": {"drainSeconds": 2.5}}, "/ws/drainSeconds"),
        ({"externalRedis": {"url": "http://redis:6379"}}, "/externalRedis/url"),
        ({"ingress": {"webPaths": [{"path": "api", "pathType": "Prefix"}]}}, "/ingress/webPaths/0/path"),
        ({"config": {"logLevel": "verbose"}}, "/config/logLevel"),
        ({"web": {"replicas": 2}}, "additional properties 'replicas' not allowed"),
    ],
)
def test_wrong_types_and_unknown_keys_are_refused(values, expected):
    assert expected in refusal({**values_file("default-values.yaml"), **values})


def test_without_urls_or_an_existing_secret_the_render_says_what_is_missing():
    message = refusal({})
    assert "externalDatabase.url is required" in message or "externalRedis.url is required" in message


def test_both_monitor_kinds_at_once_are_refused():
    values = {**values_file("default-values.yaml"), "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
    assert "choose one" in refusal(values)


def test_an_httproute_without_a_gateway_is_refused():
    values = {**values_file("default-values.yaml"), "httpRoute": {"enabled": True}}
    assert "httpRoute.parentRefs must name at least one Gateway" in refusal(values)
