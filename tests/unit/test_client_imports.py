"""The Python client runs in any Python program: importing it loads neither Django nor a tier."""

from __future__ import annotations

import os
import subprocess
import sys


def test_jobcast_client_loads_no_django_and_no_tier(tmp_path):
    code = ("import sys, jobcast.client; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'django' or m.startswith('jobcast.'))))")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "JOBCAST_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=True)
    loaded = set(done.stdout.split())
    assert "jobcast.client.watch" in loaded and "jobcast.events.schema" in loaded
    assert {m for m in loaded if m.split(".")[0] == "django"} == set()
    assert {m for m in loaded if m.startswith(("jobcast.web", "jobcast.ws", "jobcast.worker"))} == set()
