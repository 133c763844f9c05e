"""`make audit` (scripts/audit): pip-audit over the lock files; a known vulnerability fails it, an
unreachable vulnerability service is said plainly and does not."""

from __future__ import annotations

import os
import subprocess
import sys

from jobcast.cli.stack import free_port
from tests.support import REPO, load_script

audit = load_script("audit")


def test_make_audit_runs_the_script_and_make_test_runs_make_audit():
    dry = subprocess.run(["make", "-n", "audit"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "scripts/audit" in dry.stdout, dry.stdout + dry.stderr
    test_recipe = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert "audit" in test_recipe
    assert set(audit.LOCKS) == {path.name for path in REPO.glob("requirements*.lock")}


def test_an_unreachable_service_is_not_audited_and_does_not_fail(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # a proxy that nothing listens on: every request fails at once
    env = {**os.environ, "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "NO_PROXY": "", "PIP_AUDIT_CACHE_DIR": str(tmp_path)}
    for service in ("pypi", "osv"):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "audit"), "--service", service, "--timeout", "5"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"NOT audited: the vulnerability service ({service}) cannot be reached"), done.stdout
        assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stdout


def test_a_known_vulnerability_fails_and_is_named():
    report = {"dependencies": [
        {"name": "django", "version": "5.2.0", "vulns": [{"id": "PYSEC-2026-1", "fix_versions": ["5.2.1"]}]},
        {"name": "orjson", "version": "3.13.0", "vulns": []},
    ]}
    status, lines = audit.verdict(report, "pypi")
    assert status == 1
    assert lines[0] == "django 5.2.0: PYSEC-2026-1 (fixed in: 5.2.1)" and "1 of 2" in lines[-1]


def test_nothing_known_passes_and_a_service_that_knows_no_package_says_so():
    assert audit.verdict({"dependencies": [{"name": "orjson", "version": "3.13.0", "vulns": []}]}, "osv") == (
        0, ["1 locked packages audited against osv: no known vulnerability."])
    status, lines = audit.verdict({"dependencies": [{"name": "amqp", "skip_reason": "Dependency not found on PyPI"}]}, "pypi")
    assert status == 0 and lines[0].startswith("NOT audited: the vulnerability service (pypi) knows none of the 1")
