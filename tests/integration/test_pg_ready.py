"""scripts/pg-ready tells "nothing answers" from "it answered and refused the login" (make test-postgres)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobcast.cli.stack import free_port
from tests.support import REPO

pytestmark = pytest.mark.postgres


def pg_ready(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "pg-ready"), url], capture_output=True, text=True,
                          timeout=30)


def test_a_server_that_answers_is_ready():
    assert pg_ready("postgres://postgres@127.0.0.1:5432/jobcast").returncode == 0


def test_a_refused_login_is_named_as_such():
    done = pg_ready("postgres://no_such_role_here@127.0.0.1:5432/jobcast")
    assert done.returncode == 2 and "refused the login" in done.stderr and "nothing answers" not in done.stderr


def test_no_server_is_named_as_such():
    done = pg_ready(f"postgres://postgres@127.0.0.1:{free_port()}/jobcast")
    assert done.returncode == 1 and "nothing answers" in done.stderr
