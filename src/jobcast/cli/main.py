"""`jobcast`: run the tiers, manage Django, create tokens; submit, watch, list, show and cancel jobs."""

from __future__ import annotations

import sys

import click

from jobcast import django_setup, use_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobcast")
def cli():
    """jobcast: background jobs with live progress."""


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def manage(args):
    """Run a Django management command (jobcast manage migrate, createsuperuser, ...)."""
    use_settings()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["jobcast manage", *args])


@cli.command()
@click.argument("username")
@click.option("--create-user", is_flag=True, help="Create the user if it does not exist.")
@click.option("--save", is_flag=True, help="Also save the token (and server URL) in the client config file.")
@click.option("--url", default=None, help="Server URL to save with --save (default: http://127.0.0.1:8000).")
def token(username, create_user, save, url):
    """Create an API token for USERNAME and print it alone on stdout."""
    django_setup()
    from django.contrib.auth import get_user_model

    from jobcast.accounts.services import token_create

    try:
        raw = token_create(username, create_user=create_user)
    except get_user_model().DoesNotExist:
        raise click.ClickException(f"no user {username!r}; pass --create-user to create it")
    if save:
        from jobcast.client.config import save_client_config

        path = save_client_config(url=url, token=raw)
        click.echo(f"saved to {path}", err=True)
    click.echo(raw)


def _register_subcommands() -> None:
    from jobcast.cli.client import cancel_job, get_job, kinds, list_jobs, submit, watch
    from jobcast.cli.nginx import nginx_config
    from jobcast.cli.run import run

    cli.add_command(run)
    cli.add_command(nginx_config)
    cli.add_command(submit)
    cli.add_command(watch)
    cli.add_command(list_jobs)
    cli.add_command(get_job)
    cli.add_command(cancel_job)
    cli.add_command(kinds)


_register_subcommands()

if __name__ == "__main__":
    sys.exit(cli())
