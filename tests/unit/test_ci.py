"""`.ci/run` runs exactly `make test`, with CI set so an unreachable PostgreSQL fails the run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ci_run_is_make_test_with_ci_set(tmp_path):
    # A stand-in `make` first on PATH records what .ci/run asked for and with which $CI.
    fake_make = tmp_path / "make"
    fake_make.write_text('#!/bin/sh\necho "CI=${CI:-unset} args=$*"\n')
    fake_make.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"

    done = subprocess.run([str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["CI=1 args=test"]
