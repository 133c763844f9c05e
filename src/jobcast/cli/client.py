"""`jobcast submit` and `jobcast watch`: submit a job over HTTP, follow it over WebSocket (docs/cli.md).

Exit codes: 0 the job succeeded (or, without --follow, was submitted); 1 the job failed,
or the server could not be reached; 2 a usage or API error (bad params, not
authenticated, no such job); 3 the job was cancelled; 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime
from typing import NoReturn

import click
import httpx

from jobcast.cli.config import load_client_config
from jobcast.cli.follow import FollowError, JobFollower, ws_url_for

EXIT_FOR_STATE = {"succeeded": 0, "failed": 1, "cancelled": 3}
EXIT_INTERRUPTED = 130


def fail(message: str, code: int) -> NoReturn:
    """Print `message` on stderr and exit with `code` (no traceback)."""
    click.secho(f"jobcast: {message}", fg="red", err=True)
    sys.exit(code)


def client_settings() -> tuple[str, str]:
    """The server URL and token; exits with a hint when there is no token."""
    config = load_client_config()
    if not config["token"]:
        fail("no API token. Create one with `jobcast token <username> --create-user --save` "
             "(or set JOBCAST_TOKEN).", 2)
    return config["url"], config["token"]


def parse_param(text: str) -> tuple[str, object]:
    """KEY=VALUE, VALUE read as JSON when it is JSON (50 → int, true → bool, null → None), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--param")

    def no_constants(name):  # NaN and Infinity are not JSON: keep them as text
        raise ValueError(name)

    try:
        return key, json.loads(raw, parse_constant=no_constants)
    except ValueError:
        return key, raw


def describe_api_error(response: httpx.Response) -> str:
    """The contract's error body ({"detail", "errors"}) as readable lines."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code} {response.reason_phrase} from {response.request.url}"
    lines = [f"{body.get('detail') or response.reason_phrase} (HTTP {response.status_code})"]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            loc = ".".join(str(part) for part in error.get("loc") or [])
            lines.append(f"  {loc or '-'}: {error.get('msg', '')}")
        else:
            lines.append(f"  {error}")
    if response.status_code in (401, 403):
        lines.append("  (is the token right? Create one with `jobcast token <username> --create-user --save`)")
    if response.status_code == 429 and "Retry-After" in response.headers:
        lines.append(f"  (retry after {response.headers['Retry-After']} s)")
    return "\n".join(lines)


class JsonView:
    """Every message as one JSON line on stdout; notes on stderr."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def message(self, message: dict) -> None:
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()  # a script reading the pipe sees each event as it comes

    def note(self, text: str) -> None:
        click.echo(text, err=True)

    def summary(self, text: str) -> None:
        click.echo(text, err=True)  # stdout stays JSON lines only


class BarView:
    """A rich progress bar; log lines, state changes and notes printed above it."""

    def __init__(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TaskProgressColumn, TextColumn, TimeElapsedColumn)

        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("connecting", total=None)
        self.kind = self.state = self.label = ""

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def print(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.progress.console.print(Text(text, style=style))  # Text: a job's message is not markup

    def redraw(self, progress: dict | None = None) -> None:
        if progress is not None:
            self.label = progress.get("message") or ""
            self.progress.update(self.task, completed=progress.get("current") or 0, total=progress.get("total") or None)
        # The state shows only when it is news: queued, or over.
        parts = [self.kind, self.label, self.state if self.state != "running" else ""]
        self.progress.update(self.task, description=" · ".join(part for part in parts if part))

    def message(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            job = message.get("job") or {}
            self.kind, self.state = job.get("kind", ""), job.get("state", "")
            if message.get("reset"):
                self.print("some events were trimmed from history; showing the job's current state", "yellow")
            self.redraw(job.get("progress") or {})
        elif kind == "progress":
            self.redraw(message)
        elif kind == "log":
            self.print(f"{_clock(message.get('ts'))} {message.get('message', '')}")
        elif kind == "state":
            self.state = message.get("state", "")
            self.print(f"{_clock(message.get('ts'))} state: {self.state}", "bold")
            self.redraw()
        elif kind == "error":
            self.print(f"server: {message.get('detail', message)}", "red")

    def note(self, text: str) -> None:
        self.print(text, "dim")

    def summary(self, text: str) -> None:
        click.echo(text)


def _clock(ts) -> str:
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def summarize(job_id: str, final: dict) -> str:
    """One line: the job's final state and its result or error."""
    state = final.get("state")
    if state == "succeeded":
        detail = f"result: {json.dumps(final.get('result'))}"
    elif final.get("error"):
        error = final["error"]
        detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
    else:
        detail = ""
    line = f"job {job_id} {state}" + (f" ({detail})" if detail else "")
    return line if len(line) <= 500 else line[:497] + "..."


def follow(url: str, token: str, job_id: str, *, as_json: bool) -> None:
    """Follow a job to its end, then exit with the code of its final state."""
    try:
        stream = ws_url_for(url, job_id)
    except ValueError as exc:
        fail(str(exc), 2)
    view = JsonView() if as_json else BarView()
    follower = JobFollower(
        stream, token, on_message=view.message,
        on_retry=lambda reason, delay: view.note(f"{reason}; reconnecting in {delay:.1f} s"),
    )
    try:
        with view:
            final = asyncio.run(follower.run())
    except FollowError as exc:
        fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        # Only the watching stops; the job is the server's and keeps running.
        click.echo(f"stopped watching; job {job_id} goes on (jobcast watch {job_id} to resume)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(final["state"])
    view.summary(click.style(summarize(job_id, final), fg=colour))
    sys.exit(EXIT_FOR_STATE.get(final["state"], 1))


@click.command()
@click.argument("kind")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A job parameter; VALUE is read as JSON when it is JSON, else as a string. Repeatable.")
@click.option("--follow", "-f", "follow_job", is_flag=True, help="Then follow the job to its end, like `watch`.")
@click.option("--json", "as_json", is_flag=True, help="With --follow: print each message as a JSON line, no bar.")
@click.option("--idempotency-key", metavar="KEY", help="Submitting again with the same key returns the same job.")
def submit(kind, params, follow_job, as_json, idempotency_key):
    """Submit a job of KIND; print its id (or, with --follow, follow it)."""
    parsed = dict(parse_param(text) for text in params)
    url, token = client_settings()
    headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    try:
        response = httpx.post(f"{url}/api/jobs/", json={"kind": kind, "params": parsed}, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url} ({type(exc).__name__}: {exc}); is the server running (`jobcast run`)?", 1)
    if response.status_code >= 400:
        fail(describe_api_error(response), 2 if response.status_code < 500 else 1)
    try:
        job = response.json()
        job_id = job["id"]
    except (ValueError, KeyError, TypeError):
        fail(f"unexpected answer from {url}: HTTP {response.status_code}", 1)
    if response.status_code == 200:
        click.echo(f"job {job_id} already submitted with this idempotency key", err=True)
    if not follow_job:
        click.echo(job_id)
        return
    click.echo(f"submitted {job.get('kind', kind)} job {job_id}", err=True)
    follow(url, token, job_id, as_json=as_json)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print each message as a JSON line instead of the bar.")
def watch(job_id, as_json):
    """Follow job JOB_ID live until it ends; exit 0 succeeded, 1 failed, 3 cancelled."""
    try:
        job_id = str(uuid.UUID(job_id))
    except ValueError:
        fail(f"not found: {job_id!r} is not a job id (a UUID)", 2)
    url, token = client_settings()
    follow(url, token, job_id, as_json=as_json)
