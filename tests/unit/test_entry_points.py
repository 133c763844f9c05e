"""Each tier's entry point loads that tier and the core, nothing of another tier."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENTRY_POINTS = {
    "jobcast.ws.asgi": "jobcast.web",
    "jobcast.web.wsgi": "jobcast.ws",
    "jobcast.worker.app": "jobcast.web",
}


def modules_loaded_by(module: str, tmp_path) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.startswith('jobcast'))))"
    env = {**os.environ, "JOBCAST_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


# jobcast.web is an installed app (its templates and static files, as in a product): Django imports
# its package and its AppConfig in every process, and nothing else of the tier.
APP_CONFIGS = {"jobcast.web", "jobcast.web.apps"}


@pytest.mark.parametrize("module, foreign", ENTRY_POINTS.items())
def test_an_entry_point_loads_no_other_tier(module, foreign, tmp_path):
    loaded = modules_loaded_by(module, tmp_path)
    assert module in loaded
    assert sorted(m for m in loaded if (m == foreign or m.startswith(foreign + ".")) and m not in APP_CONFIGS) == []


def test_the_front_door_without_nginx_loads_both(tmp_path):
    loaded = modules_loaded_by("jobcast.frontdoor", tmp_path)
    assert {"jobcast.web.middleware", "jobcast.ws.consumers"} <= loaded
