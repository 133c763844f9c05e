"""The client commands (docs/cli.md): `submit`, `watch`, `list`, `get`, `cancel`, `kinds`.

Thin users of jobcast.client: they parse options, call the client, and print. Exit codes:
0 done (`watch`/`--follow`: the job succeeded); 1 the job failed, or the server could not
be reached or answered 5xx; 2 a usage or API error (bad params, not authenticated, no such
job, a job already finished); 3 the job was cancelled; 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, NoReturn

import click

from jobcast.client import ApiError, Client, Message, Unreachable, WatchError, ws_url_for
from jobcast.client.config import load_client_config
from jobcast.events.schema import JobDocument, StateEvent
from jobcast.jobs.states import State

EXIT_FOR_STATE = {"succeeded": 0, "failed": 1, "cancelled": 3}
EXIT_INTERRUPTED = 130
TOKEN_HINT = "jobcast token <username> --create-user --save"


def fail(message: str, code: int) -> NoReturn:
    """Print `message` on stderr and exit with `code` (no traceback)."""
    click.secho(f"jobcast: {message}", fg="red", err=True)
    sys.exit(code)


def client_settings() -> tuple[str, str]:
    """The server URL and token; exits with a hint when there is no token."""
    config = load_client_config()
    if not config["token"]:
        fail(f"no API token. Create one with `{TOKEN_HINT}` (or set JOBCAST_TOKEN).", 2)
    return config["url"], config["token"]


def describe_api_error(error: ApiError) -> str:
    """The contract's error body ({"detail", "errors"}) as readable lines."""
    lines = [f"{error.detail} (HTTP {error.status})"]
    for item in error.errors:
        if isinstance(item, dict):
            loc = ".".join(str(part) for part in item.get("loc") or [])
            lines.append(f"  {loc or '-'}: {item.get('msg', '')}")
        else:
            lines.append(f"  {item}")
    if error.status in (401, 403):
        lines.append(f"  (is the token right? Create one with `{TOKEN_HINT}`)")
    if error.status == 429 and error.retry_after is not None:
        lines.append(f"  (retry after {error.retry_after:g} s)")
    return "\n".join(lines)


@contextmanager
def api() -> Iterator[Client]:
    """A client for the configured server; API errors and an unreachable server end the command."""
    url, token = client_settings()
    try:
        with Client(url, token) as client:
            yield client
    except ApiError as exc:
        fail(describe_api_error(exc), 2 if exc.status < 500 else 1)
    except Unreachable as exc:
        fail(f"{exc}; is the server running (`jobcast run`)?", 1)


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


def job_id_argument(job_id: str) -> str:
    """JOB_ID as a canonical UUID; anything else is "not found" (exit 2), as the server would say."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        fail(f"not found: {job_id!r} is not a job id (a UUID)", 2)


def print_json(model) -> None:
    sys.stdout.write(model.model_dump_json() + "\n")
    sys.stdout.flush()  # a script reading the pipe sees each line as it comes


# --- watching -----------------------------------------------------------------------------------


class JsonView:
    """Every message as one JSON line on stdout; notes on stderr."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def message(self, message: Message) -> None:
        print_json(message)

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

    def redraw(self, progress=None) -> None:
        if progress is not None:
            self.label = progress.message or ""
            self.progress.update(self.task, completed=progress.current or 0, total=progress.total or None)
        # The state shows only when it is news: queued, or over.
        parts = [self.kind, self.label, self.state if self.state != "running" else ""]
        self.progress.update(self.task, description=" · ".join(part for part in parts if part))

    def message(self, message: Message) -> None:
        if message.type == "snapshot":
            self.kind, self.state = message.job.kind, str(message.job.state)
            if message.reset:
                self.print("some events were trimmed from history; showing the job's current state", "yellow")
            self.redraw(message.job.progress)
        elif message.type == "progress":
            self.redraw(message)
        elif message.type == "log":
            self.print(f"{_clock(message.ts)} {message.message}")
        elif message.type == "state":
            self.state = str(message.state)
            self.print(f"{_clock(message.ts)} state: {self.state}", "bold")
            self.redraw()

    def note(self, text: str) -> None:
        self.print(text, "dim")

    def summary(self, text: str) -> None:
        click.echo(text)


def _clock(ts) -> str:
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--"


def summarize(job_id: str, final: StateEvent) -> str:
    """One line: the job's final state and its result or error."""
    if final.state == State.SUCCEEDED:
        detail = f"result: {json.dumps(final.result)}"
    elif final.error is not None:
        detail = f"{final.error.type}: {final.error.message}"
    else:
        detail = ""
    line = f"job {job_id} {final.state}" + (f" ({detail})" if detail else "")
    return line if len(line) <= 500 else line[:497] + "..."


def follow(client: Client, job_id: str, *, as_json: bool) -> NoReturn:
    """Follow a job to its end with Client.watch, then exit with the code of its final state."""
    try:
        ws_url_for(client.url, job_id)
    except ValueError as exc:  # a server URL that is not http(s)
        fail(str(exc), 2)
    view = JsonView() if as_json else BarView()

    async def run() -> StateEvent:
        watch = client.watch(job_id, on_retry=lambda reason, delay: view.note(f"{reason}; reconnecting in {delay:.1f} s"))
        async for message in watch:
            view.message(message)
        return watch.final

    try:
        with view:
            final = asyncio.run(run())
    except WatchError as exc:
        fail(exc.reason, 1 if exc.gave_up else 2)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        # Only the watching stops; the job is the server's and keeps running.
        click.echo(f"stopped watching; job {job_id} goes on (jobcast watch {job_id} to resume)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(final.state)
    view.summary(click.style(summarize(job_id, final), fg=colour))
    sys.exit(EXIT_FOR_STATE.get(final.state, 1))


# --- the commands -------------------------------------------------------------------------------


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
    with api() as client:
        job = client.submit(kind, parsed, idempotency_key=idempotency_key)
        if not job.created:
            click.echo(f"job {job.id} already submitted with this idempotency key", err=True)
        if not follow_job:
            click.echo(job.id)
            return
        click.echo(f"submitted {job.kind} job {job.id}", err=True)
        follow(client, job.id, as_json=as_json)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print each message as a JSON line instead of the bar.")
def watch(job_id, as_json):
    """Follow job JOB_ID live until it ends; exit 0 succeeded, 1 failed, 3 cancelled."""
    job_id = job_id_argument(job_id)
    with api() as client:
        follow(client, job_id, as_json=as_json)


def _percent(job: JobDocument) -> str:
    if job.progress.percent is not None:
        return f"{job.progress.percent:.0f}%"
    return f"{job.progress.current:g}" if job.progress.current else "-"


@click.command("list")
@click.option("--state", type=click.Choice([s.value for s in State]), help="Only jobs in this state.")
@click.option("--limit", "-n", type=click.IntRange(1), default=20, show_default=True, help="At most this many jobs.")
@click.option("--json", "as_json", is_flag=True, help="One job document per line, as JSON.")
def list_jobs(state, limit, as_json):
    """List my jobs, newest first."""
    with api() as client:
        jobs = client.jobs(state=state, limit=limit)
        if as_json:
            for job in jobs:
                print_json(job)
            return
        rows = [(job.id, job.kind, str(job.state), _percent(job), job.created_at[:19].replace("T", " "))
                for job in jobs]
    if not rows:
        click.echo("no jobs" + (f" {state}" if state else ""), err=True)
        return
    header = ("ID", "KIND", "STATE", "PROGRESS", "CREATED (UTC)")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def show_job(job: JobDocument) -> None:
    """A job document for people: one field a line."""
    progress = job.progress
    if progress.total is not None:
        shown = f"{progress.current:g}/{progress.total:g} ({progress.percent:g}%)"
    else:
        shown = f"{progress.current:g}"
    fields = [
        ("id", job.id), ("kind", job.kind), ("state", str(job.state)),
        ("progress", shown + (f" {progress.message}" if progress.message else "")),
        ("params", json.dumps(job.params)), ("attempts", job.attempts), ("seq", job.seq),
        ("created", job.created_at), ("started", job.started_at or "-"), ("finished", job.finished_at or "-"),
    ]
    if job.state == State.SUCCEEDED:
        fields.append(("result", json.dumps(job.result)))
    if job.error is not None:
        fields.append(("error", f"{job.error.type}: {job.error.message}"))
    for name, value in fields:
        click.echo(f"{name + ':':10} {value}")


def one_job(job_id: str, action) -> JobDocument:
    """`action(client, job_id)` for a JOB_ID argument (not a UUID: "not found", exit 2)."""
    job_id = job_id_argument(job_id)
    with api() as client:
        return action(client, job_id)


job_json_option = click.option("--json", "as_json", is_flag=True, help="The job document as JSON.")


@click.command("get")
@click.argument("job_id")
@job_json_option
def get_job(job_id, as_json):
    """Show job JOB_ID: state, progress, result or error."""
    job = one_job(job_id, Client.get)
    print_json(job) if as_json else show_job(job)


@click.command("cancel")
@click.argument("job_id")
@job_json_option
def cancel_job(job_id, as_json):
    """Cancel job JOB_ID (a running job stops at its next progress or check)."""
    job = one_job(job_id, Client.cancel)
    if as_json:
        print_json(job)
    elif job.state == State.CANCELLED:
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id} is {job.state}: asked to stop (`jobcast watch {job.id}` shows when it does)")


def describe_param(name: str, schema: dict, required: bool) -> str:
    """One parameter of a kind's params JSON Schema, for people."""
    types = [option.get("type") for option in schema.get("anyOf", [])] or [schema.get("type", "any")]
    words = ["|".join(str(t) for t in types if t)]
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        words.append(f"{'' if low is None else low}..{'' if high is None else high}")
    if "minLength" in schema or "minItems" in schema:
        words.append(f"at least {schema.get('minLength', schema.get('minItems'))}")
    if required:
        words.append("required")
    elif "default" in schema:
        words.append(f"default {json.dumps(schema['default'])}")
    text = f"  {name:14} {', '.join(words)}"
    return text + (f"  {schema['description']}" if schema.get("description") else "")


@click.command("kinds")
@click.option("--json", "as_json", is_flag=True, help="One kind per line, as JSON (with its params' JSON Schema).")
def kinds(as_json):
    """List the job kinds the server runs, with their parameters."""
    with api() as client:
        found = client.kinds()
    for kind in found:
        if as_json:
            print_json(kind)
            continue
        click.echo(f"{kind.name}  {kind.title}" if kind.title != kind.name else kind.name)
        schema = kind.params_schema
        required = set(schema.get("required", []))
        for name, prop in (schema.get("properties") or {}).items():
            click.echo(describe_param(name, prop, name in required))
