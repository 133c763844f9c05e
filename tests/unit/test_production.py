"""Production strictness (jobcast.production): on a non-loopback address the tiers refuse DEBUG and a
generated, placeholder or short SECRET_KEY with one line and status 2; on loopback they start as before."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from types import SimpleNamespace

import pytest

from jobcast.production import is_loopback, production_refusal

GOOD_KEY = secrets.token_urlsafe(50)


@pytest.mark.parametrize("bind, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("jobs.example.com", False),
])
def test_only_loopback_addresses_are_not_production(bind, loopback):
    assert is_loopback(bind) is loopback


def settings_with(**values):
    return SimpleNamespace(**{"DEBUG": False, "SECRET_KEY": GOOD_KEY, "SECRET_KEY_FROM_ENV": True, **values})


@pytest.mark.parametrize("values, says", [
    ({"DEBUG": True}, "DEBUG is on"),
    ({"SECRET_KEY_FROM_ENV": False}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": "change-me-to-a-long-random-string"}, "placeholder"),
    ({"SECRET_KEY": "django-insecure-" + GOOD_KEY}, "placeholder"),
    ({"SECRET_KEY": "x" * 31}, "shorter than 32"),
])
def test_each_unsafe_setting_is_refused_in_production_only(values, says):
    refusal = production_refusal(settings_with(**values), "0.0.0.0")
    assert refusal.startswith("jobcast: refusing to start on 0.0.0.0 (production): ") and says in refusal
    assert "\n" not in refusal
    assert production_refusal(settings_with(**values), "127.0.0.1") is None


def test_a_real_key_without_debug_starts_in_production():
    assert production_refusal(settings_with(), "0.0.0.0") is None
    # A product's settings (no SECRET_KEY_FROM_ENV): only its key's value is judged.
    assert production_refusal(SimpleNamespace(DEBUG=False, SECRET_KEY=GOOD_KEY), "0.0.0.0") is None


def jobcast(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "DJANGO_")) and k not in (
        "SECRET_KEY", "DEBUG", "REDIS_URL", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "jobcast.cli.main", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "JOBCAST_DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize("tier", ["web", "ws", "worker", "all"])
def test_jobcast_run_refuses_a_generated_key_on_a_public_address_with_one_line(tmp_path, tier):
    done = jobcast(tmp_path, "run", *([] if tier == "all" else [tier]), JOBCAST_BIND="0.0.0.0")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert done.stderr.startswith("jobcast: refusing to start on 0.0.0.0 (production): SECRET_KEY is not set")


def test_jobcast_run_refuses_debug_and_the_example_key_together(tmp_path):
    done = jobcast(tmp_path, "run", "web", JOBCAST_BIND="0.0.0.0", DEBUG="true",
                   SECRET_KEY="change-me-to-a-long-random-string")
    assert done.returncode == 2
    assert "DEBUG is on" in done.stderr and "SECRET_KEY is a placeholder" in done.stderr and len(done.stderr.splitlines()) == 1


def test_check_deploy_reports_the_same_problems(tmp_path):
    done = jobcast(tmp_path, "manage", "check", "--deploy", SECRET_KEY="change-me-to-a-long-random-string", DEBUG="true")
    assert done.returncode != 0
    assert "jobcast.E004" in done.stderr and "jobcast.E002" in done.stderr, done.stderr
