"""`jobcast`: run the tiers, manage Django, create tokens; submit, watch, list, show and cancel jobs."""

from __future__ import annotations

import json
import sys

import click

from jobcast import django_setup, use_settings
from jobcast.cli.options import settings_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobcast")
def cli():
    """jobcast: background jobs with live progress."""


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def manage(args):
    """Run a Django management command (jobcast manage migrate, createsuperuser, ...; --settings works as in Django)."""
    settings_module = next((arg.split("=", 1)[1] for arg in args if arg.startswith("--settings=")), None)
    if settings_module is None and "--settings" in args and args.index("--settings") + 1 < len(args):
        settings_module = args[args.index("--settings") + 1]
    use_settings(settings_module)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["jobcast manage", *args])


@cli.command()
@click.argument("username", required=False)
@click.option("--create-user", is_flag=True, help="Create the user if it does not exist.")
@click.option("--expires", metavar="DURATION", help="Make the token expire after this long: 30d, 12h, 90m.")
@click.option("--service", is_flag=True,
              help="A service token: it may only submit jobs on behalf of a product's users (Jobcast-Subject).")
@click.option("--save", is_flag=True, help="Also save the token (and server URL) in the client config file.")
@click.option("--url", default=None, help="Server URL to save with --save (default: http://127.0.0.1:8000).")
@click.option("--list", "list_", is_flag=True, help="List the tokens (of USERNAME, or of everyone) instead.")
@click.option("--revoke", metavar="TOKEN", help="Revoke a token, named by the id or prefix --list shows.")
@click.option("--json", "as_json", is_flag=True, help="With --list or --revoke: JSON on stdout.")
@settings_option
def token(username, create_user, expires, service, save, url, list_, revoke, as_json):
    """Create an API token for USERNAME and print it alone on stdout; or list or revoke tokens."""
    django_setup()
    from jobcast.accounts.models import ApiToken
    from jobcast.accounts.services import token_list, token_revoke

    if list_:
        _show_tokens(token_list(username), as_json)
        return
    if revoke:
        try:
            _show_tokens([token_revoke(revoke)], as_json, note="revoked")
        except (ApiToken.DoesNotExist, ValueError) as exc:
            raise click.ClickException(str(exc.args[0]) if exc.args else str(exc))
        return
    if not username:
        raise click.UsageError("USERNAME is needed to create a token (or use --list or --revoke)")
    _create_token(username, create_user, _expiry(expires), service, save, url)


def _create_token(username, create_user, expires_at, service, save, url) -> None:
    from django.contrib.auth import get_user_model
    from django.db import IntegrityError

    from jobcast.accounts.services import token_create

    try:
        raw = token_create(username, create_user=create_user, expires_at=expires_at, service=service)
    except get_user_model().DoesNotExist:
        raise click.ClickException(f"no user {username!r}; pass --create-user to create it")
    except IntegrityError as exc:  # a custom user model with more required fields than USERNAME_FIELD
        raise click.ClickException(f"could not create user {username!r} ({exc}): create it yourself "
                                   "(jobcast manage createsuperuser, or your product's own way), then run this again")
    if save:
        from jobcast.client.config import save_client_config

        path = save_client_config(url=url, token=raw)
        click.echo(f"saved to {path}", err=True)
    click.echo(raw)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _expiry(text: str | None):
    """The moment a token made now with `--expires TEXT` stops working (None: never)."""
    if not text:
        return None
    from datetime import timedelta

    from django.utils import timezone

    number, unit = text[:-1], text[-1:].lower()
    if unit not in DURATION_UNITS or not number.isdigit() or int(number) == 0:
        raise click.BadParameter(f"{text!r}: give a number and a unit, e.g. 30d, 12h, 90m", param_hint="--expires")
    return timezone.now() + timedelta(seconds=int(number) * DURATION_UNITS[unit])


def _show_tokens(tokens, as_json: bool, note: str = "") -> None:
    """Tokens as a table (or JSON): never their value, which is not stored."""
    rows = [{"id": t.id, "prefix": f"jc_{t.prefix}…" if t.prefix else "", "user": t.user.get_username(), "service": t.service,
             "created_at": t.created_at.isoformat(), "expires_at": t.expires_at.isoformat() if t.expires_at else None,
             "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
             "state": "revoked" if t.revoked_at else ("usable" if t.usable else "expired")} for t in tokens]
    if as_json:
        click.echo(json.dumps(rows if not note else rows[0]))
        return
    if note:
        click.echo(f"{note}: token {rows[0]['id']} ({rows[0]['prefix']}) of {rows[0]['user']}", err=True)
        return
    for row in rows:
        click.echo(f"{row['id']:>6}  {row['prefix']:<14} {row['user']:<20} {row['state']:<8} "
                   f"created {row['created_at'][:19]}  expires {(row['expires_at'] or 'never')[:19]}"
                   + ("  service" if row["service"] else ""))


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
