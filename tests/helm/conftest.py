"""Fixtures of the Helm chart tests: each values file of deploy/helm/jobcast/ci/ rendered once per session."""

from __future__ import annotations

import pytest

from tests.helm.manifests import Render, ci_values_files, render, values_file

CASES = ci_values_files()


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    """{values file name: its render}, for every file in ci/."""
    return {name: render(values_file(name), name) for name in CASES}


@pytest.fixture(scope="session")
def default(renders) -> Render:
    return renders["default-values.yaml"]


@pytest.fixture(params=CASES)
def case(request, renders) -> Render:
    return renders[request.param]
