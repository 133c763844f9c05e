"""`pip install` of the built wheel into a fresh virtualenv, beside a Django 5.2 patch release other
than the one jobcast's lock pins: the package's ranges let a product keep its own pins (PyPI)."""

from __future__ import annotations

import re
import subprocess
import sys
import venv

from tests.support import REPO


def test_the_wheel_installs_beside_another_django_patch_release(tmp_path):
    locked = re.search(r"^django==5\.2\.(\d+)", (REPO / "requirements.lock").read_text(), flags=re.MULTILINE)
    patch = int(locked.group(1))
    other = f"5.2.{patch - 1 if patch else patch + 1}"
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("jobcast-*.whl"))
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    # A product's own pin and jobcast, resolved together from PyPI (pip's cache keeps reruns quick).
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"Django=={other}", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    check = subprocess.run([str(python), "-c", "import django, jobcast.conf, jobcast.ws.layer, jobcast.accounts.stream_tokens; "
                            "print(django.get_version())"], capture_output=True, text=True, timeout=60,
                           env={"DJANGO_SETTINGS_MODULE": "jobcast.settings", "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == other
    version = subprocess.run([str(tmp_path / "venv" / "bin" / "jobcast"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr
