"""The command line that serves each tier: what `jobcast run <tier>` execs and the local stack starts."""

from __future__ import annotations

import os
import sys

from jobcast.env import get_env

TIERS = ("all", "web", "ws", "worker")


def tier_command(tier: str) -> list[str]:
    """The command line that serves one tier (what `jobcast run <tier>` execs)."""
    env = get_env()
    python = sys.executable
    if tier == "web":
        return [python, "-m", "gunicorn", "-c", "python:jobcast.web.gunicorn_conf", "jobcast.web.wsgi:application"]
    if tier == "ws":
        # uvicorn with a graceful drain on SIGTERM: jobcast.ws.server.
        return [python, "-m", "jobcast.ws.server", "--host", env.jobcast_bind, "--port", str(env.jobcast_ws_port)]
    if tier == "worker":
        # Celery's start-up banner is not a log line: left out where the logs are JSON lines.
        quiet = ["-q"] if env.jobcast_log_format == "json" else []
        return [
            python, "-m", "celery", *quiet, "-A", "jobcast.worker.app", "worker",
            "-Q", "jobcast", "-c", str(env.jobcast_worker_concurrency),
            "-n", f"jobcast-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle",
            "-l", env.jobcast_log_level,
        ]  # fmt: skip
    raise ValueError(tier)
