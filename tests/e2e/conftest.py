"""`live_stack`: the whole stack as real processes (`jobcast run`: Redis, gunicorn, uvicorn,
celery, nginx) on free ports, with its own data dir; on PostgreSQL in the PostgreSQL pass."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from jobcast.cli.stack import free_port
from tests.support import stop_process, wait_until


STREAM_TOKEN_SECRET = "the-product-and-jobcast-share-this-secret-0123456789"


@dataclass
class LiveStack:
    url: str  # the front door (nginx)
    ws_url: str
    web_port: int
    ws_port: int
    env: dict
    process: subprocess.Popen
    log: Path
    data_dir: Path
    tokens: dict = field(default_factory=dict)

    def jobcast(self, *args: str, timeout: float = 60, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Run a `jobcast` command against this stack (`env` adds to the stack's environment)."""
        return subprocess.run(
            [sys.executable, "-m", "jobcast.cli.main", *args],
            env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout, **kwargs,
        )

    def token(self, username: str) -> str:
        """An API token for `username` (created with `jobcast token --create-user`)."""
        if username not in self.tokens:
            done = self.jobcast("token", username, "--create-user")
            assert done.returncode == 0, done.stderr
            self.tokens[username] = done.stdout.strip()
        return self.tokens[username]

    def client(self, username: str = "e2e") -> httpx.Client:
        """An HTTP client through the front door with `username`'s token."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token(username)}"}, timeout=30)

    def browser(self, username: str) -> httpx.Client:
        """A browser's session for `username` (made if need be, given a password): Django's login form
        through nginx, with its CSRF token."""
        self.token(username)
        password = secrets.token_urlsafe(12)
        done = self.jobcast("manage", "shell", "-c",
                            f"from django.contrib.auth import get_user_model; u = get_user_model().objects.get(username='{username}'); "
                            f"u.set_password('{password}'); u.save()")
        assert done.returncode == 0, done.stderr
        client = httpx.Client(base_url=self.url, timeout=30)
        form = client.get("/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        done = client.post("/accounts/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": csrf})
        assert done.status_code == 302 and "sessionid" in client.cookies, done.text
        return client

    @contextmanager
    def running_job(self, username: str):
        """A `demo.count` job of `username` that runs for as long as the block (a progress event a second), then is cancelled."""
        with self.client(username) as client:
            made = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 100_000, "interval_ms": 1000}})
            assert made.status_code == 201, made.text
            try:
                yield made.json()
            finally:
                client.post(f"/api/jobs/{made.json()['id']}/cancel/")

    def pids(self, pattern: str) -> list[int]:
        """Pids of this stack's processes whose command line contains `pattern`."""
        out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
        rows = [line.split(None, 2) for line in out.splitlines()[1:]]
        children: dict[int, list[int]] = {}
        for pid, ppid, _ in rows:
            children.setdefault(int(ppid), []).append(int(pid))
        tree, todo = set(), [self.process.pid]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo.extend(children.get(pid, []))
        return [int(pid) for pid, _, args in rows if int(pid) in tree and pattern in args]

    def tier_processes(self) -> dict[str, set[int]]:
        """The supervisor's own children that run each tier (a tier it restarted gets a new pid)."""
        pid = self.process.pid
        children = set(map(int, open(f"/proc/{pid}/task/{pid}/children").read().split()))
        patterns = {"web": "gunicorn", "ws": "jobcast.ws.server", "worker": "celery"}
        return {tier: set(self.pids(pattern)) & children for tier, pattern in patterns.items()}


def _postgres_database(url: str):
    """Create a fresh database on the server in `url` for the stack; returns (its URL, drop function)."""
    import psycopg

    parts = urlsplit(url)
    name = f"jobcast_e2e_{secrets.token_hex(4)}"
    admin = dict(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres", dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return parts._replace(path=f"/{name}").geturl(), drop


def start_stack(data_dir: Path, *, database_port: int | None = None, **extra_env: str) -> tuple[LiveStack, callable]:
    """Start `jobcast run` with its own data dir and free ports; returns the stack and its stop function.

    In the PostgreSQL pass the stack gets a database of its own; with `database_port` its
    tiers reach the server through 127.0.0.1:database_port (a test's proxy) instead.
    """
    port, web_port, ws_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DJANGO_"))}
    env.update(
        JOBCAST_DATA_DIR=str(data_dir),
        JOBCAST_PORT=str(port),
        JOBCAST_WEB_PORT=str(web_port),
        JOBCAST_WS_PORT=str(ws_port),
        JOBCAST_CONFIG=str(data_dir / "client.json"),
        JOBCAST_URL=f"http://127.0.0.1:{port}",
        JOBCAST_WORKER_CONCURRENCY="2",
        JOBCAST_LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env)
    port, web_port, ws_port = (int(env[name]) for name in ("JOBCAST_PORT", "JOBCAST_WEB_PORT", "JOBCAST_WS_PORT"))
    env["JOBCAST_URL"] = f"http://127.0.0.1:{port}"
    drop_database = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        env["DATABASE_URL"], drop_database = _postgres_database(os.environ["DATABASE_URL"])
        if database_port is not None:
            parts = urlsplit(env["DATABASE_URL"])
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@127.0.0.1:{database_port}" if credentials else f"127.0.0.1:{database_port}"
            env["DATABASE_URL"] = parts._replace(netloc=netloc).geturl()
    else:
        env.pop("DATABASE_URL", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "stack.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobcast.cli.main", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    stack = LiveStack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", web_port, ws_port, env, process, log, data_dir)

    def ready():
        if process.poll() is not None:
            raise RuntimeError(f"jobcast run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(f"{stack.url}/readyz", timeout=2).status_code == 200 and b"up at" in log.read_bytes()
        except httpx.HTTPError:
            return False

    def stop():
        stop_process(process, signal.SIGINT, timeout=60)
        if drop_database:
            drop_database()

    try:
        wait_until(ready, 90, "jobcast run to come up", interval=0.3)
    except BaseException:
        stop()
        raise
    return stack, stop


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    """The whole stack behind nginx, shared by the end-to-end tests."""
    # With a stream-token secret, as a product beside jobcast configures it (tests/e2e/test_stream_tokens.py).
    stack, stop = start_stack(tmp_path_factory.mktemp("stack"), JOBCAST_FRONT_DOOR="nginx", JOBCAST_JWT_SECRET=STREAM_TOKEN_SECRET)
    try:
        yield stack
    finally:
        stop()
