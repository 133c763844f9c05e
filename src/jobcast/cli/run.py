"""`jobcast run [web|ws|worker]`: start one tier, or the whole local stack (docs/cli.md).

A single tier replaces this process with its server (exec), so SIGTERM from an
orchestrator reaches gunicorn, uvicorn or celery directly.
"""

from __future__ import annotations

import os
import sys

import click

from jobcast import use_settings
from jobcast.cli.options import settings_option
from jobcast.cli.tiers import TIERS, tier_command
from jobcast.env import environ_for_child, get_env
from jobcast.metrics import prepare_multiprocess_dir
from jobcast.production import production_refusal


@click.command()
@click.argument("tier", required=False, default="all", type=click.Choice(TIERS))
@settings_option
def run(tier):
    """Start one tier (web, ws, worker) or, by default, the whole stack at http://127.0.0.1:8000."""
    refuse_an_unsafe_production()
    if tier == "all":
        from jobcast.cli.stack import Stack

        sys.exit(Stack().run())
    command = tier_command(tier)
    # Celery's warm shutdown would wait for a running job however long it takes; as a
    # cold shutdown with a soft timeout it waits JOBCAST_WORKER_SHUTDOWN_SECONDS, then
    # requeues the job (billiard reads REMAP_SIGTERM from the environment).
    extra = {"REMAP_SIGTERM": "SIGQUIT"} if tier == "worker" else {}
    if tier in ("web", "worker"):
        # Several processes per tier: their metrics meet in a folder of their own (jobcast.metrics).
        env = get_env()
        instance = f"web-{env.jobcast_web_port}" if tier == "web" else f"worker-{os.getpid()}"
        folder = prepare_multiprocess_dir(env.data_dir / "metrics" / instance)
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.execve(command[0], command, environ_for_child(**extra))


def refuse_an_unsafe_production() -> None:
    """Exit with one line (status 2) when the tiers would serve a network with DEBUG on or a known or
    generated SECRET_KEY (jobcast.production)."""
    from django.conf import settings

    use_settings()  # --settings, else DJANGO_SETTINGS_MODULE, else jobcast's own
    refusal = production_refusal(settings, get_env().jobcast_bind)
    if refusal:
        click.echo(refusal, err=True)
        sys.exit(2)
