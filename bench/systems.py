"""The three systems under test, each started as real processes on 127.0.0.1 with its own redis-server.

- Jobcast: `python -m jobcast.cli.main run` (Redis, gunicorn, uvicorn ws tier, celery, nginx), as
  tests/e2e/conftest.py's start_stack does; jobs of `demo.count` over HTTP with a Bearer token.
- Stock:   bench/stock (Channels tutorial consumer, celery-progress style task, channels-redis's
  default RedisChannelLayer) under uvicorn with the same server options as jobcast's ws tier, and
  a celery worker with the same concurrency.
- Raw:     bench/raw.py's websockets server, fed by its bare publisher processes.

Each system offers the same steps to the scenarios: `prepare` jobs that will not publish before
`release` (so every watcher is connected first and latency is never replay), `idle_target` (a
job id whose sockets stay silent), and the pids of its tiers for CPU and RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jobcast.cli.stack import free_port, port_open  # noqa: E402
from tests.support import start_redis, stop_process, wait_until  # noqa: E402

PY = sys.executable
GATE_SECONDS = 300  # a start gate never holds a worker longer than this


def bench_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DJANGO_"))}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


def rss_bytes(pids: list[int], field: str = "VmRSS") -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def parallel(fn, items, workers: int = 8) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


class System:
    name = ""
    resume = False  # whether its clients resume with ?after= (only jobcast offers it)
    headers: dict = {}

    def __init__(self, concurrency: int):
        self.concurrency = concurrency

    def tiers(self) -> dict[str, list[int]]:
        """Pids by tier: ws (the socket servers), pub (workers/publishers), redis, front (nginx + web)."""
        raise NotImplementedError

    def all_pids(self) -> list[int]:
        return [pid for pids in self.tiers().values() for pid in pids]

    def settle(self, timeout: float = 30) -> None:
        """Wait until this system's processes are (nearly) idle: under 10 % of a core over 0.5 s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.all_pids()
            before = cpu_seconds(pids)
            time.sleep(0.5)
            if cpu_seconds(pids) - before < 0.05:
                return

    def group_members(self) -> int | None:
        """Group membership kept in Redis: members of channels-redis core-layer groups (sorted
        sets `asgi:group:*`, stock) plus subscribed pub/sub group channels (`asgi__group__*`,
        jobcast's pub/sub layer keeps members in the process and one subscription per group)."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            members = sum(client.zcard(key) for key in client.scan_iter("asgi:group:*", count=1000))
            return members + len(client.pubsub_channels("asgi__group__*"))
        finally:
            client.close()


class Jobcast(System):
    """jobcast through its front door. The scale-out pass varies `ws_instances` (ws processes
    behind nginx) and `worker_instances` (Celery worker instances of `concurrency` processes
    each); the ablation pass runs other commits' code (`python`: a venv with that commit
    installed, `repo`: its worktree)."""

    name = "jobcast"
    resume = True

    def __init__(self, concurrency: int, *, ws_instances: int = 1, worker_instances: int = 1,
                 python: str = PY, repo: Path = REPO):
        super().__init__(concurrency)
        self.ws_instances, self.worker_instances = ws_instances, worker_instances
        self.python, self.repo = python, repo
        self.extra_workers: list[subprocess.Popen] = []

    def start(self, workdir: Path) -> None:
        self.redis = start_redis(workdir / "redis")
        port, web_port, ws_port = free_port(), free_port(), free_port()
        self.url, self.ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        data = workdir / "data"
        data.mkdir(parents=True)
        self.env = bench_env(
            REDIS_URL=self.redis.url, JOBCAST_DATA_DIR=str(data), JOBCAST_PORT=str(port),
            JOBCAST_WEB_PORT=str(web_port), JOBCAST_WS_PORT=str(ws_port), JOBCAST_CONFIG=str(data / "client.json"),
            JOBCAST_URL=self.url, JOBCAST_FRONT_DOOR="nginx", JOBCAST_WORKER_CONCURRENCY=str(self.concurrency),
            JOBCAST_PROGRESS_MAX_RATE="0",  # no coalescing: every ctx.progress is an event (raw throughput)
            JOBCAST_SUBMIT_RATE_PER_MINUTE="0", JOBCAST_WS_MAX_CONNECTIONS_PER_USER="100000",
            JOBCAST_LOG_LEVEL="warning", JOBCAST_WS_INSTANCES=str(self.ws_instances),
            JOBCAST_WORKER_METRICS_PORT=str(free_port()), PYTHONPATH=str(self.repo),
            # Only how fast the stack stops between rounds (no scenario stops it):
            JOBCAST_WS_DRAIN_SECONDS="1", JOBCAST_WORKER_SHUTDOWN_SECONDS="3",
        )
        self.log = workdir / "stack.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([self.python, "-m", "jobcast.cli.main", "run"], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=self.repo)

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"jobcast run exited:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and b"up at" in self.log.read_bytes()
            except httpx.HTTPError:
                return False

        wait_until(ready, 120, "jobcast run", interval=0.3)
        for n in range(1, self.worker_instances):
            with open(workdir / f"worker{n}.log", "wb") as out:
                env = {**self.env, "JOBCAST_WORKER_METRICS_PORT": str(free_port())}
                self.extra_workers.append(subprocess.Popen([self.python, "-m", "jobcast.cli.main", "run", "worker"],
                                                           env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.repo))
        done = subprocess.run([self.python, "-m", "jobcast.cli.main", "token", "bench", "--create-user"], env=self.env,
                              capture_output=True, text=True, timeout=60, cwd=self.repo)
        assert done.returncode == 0, done.stderr
        self.headers = {"Authorization": f"Bearer {done.stdout.strip()}"}
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def tiers(self):
        pids = descendants(self.process.pid) + [p for w in self.extra_workers for p in descendants(w.pid)]
        lines = {pid: cmdline(pid) for pid in pids}
        return {
            "ws": [p for p, c in lines.items() if "jobcast.ws.server" in c],
            "pub": [p for p, c in lines.items() if "celery" in c],
            "redis": [self.redis.process.pid],
            "front": [p for p, c in lines.items() if "nginx" in c or "gunicorn" in c],
        }

    def submit(self, steps: int, interval_ms: int) -> str:
        response = self.http.post("/api/jobs/", json={"kind": "demo.count",
                                                      "params": {"steps": steps, "interval_ms": interval_ms}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def hold_workers(self) -> list[str]:
        """Occupy every worker process with a long demo.count (cancelled by release_workers)."""
        gates = [self.submit(GATE_SECONDS, 1000) for _ in range(self.concurrency * self.worker_instances)]
        wait_until(lambda: all(self.http.get(f"/api/jobs/{g}/").json()["state"] == "running" for g in gates),
                   60, "the gate jobs to run", interval=0.2)
        return gates

    def release_workers(self, gates: list[str]) -> None:
        parallel(lambda g: self.http.post(f"/api/jobs/{g}/cancel/"), gates)

    def prepare(self, jobs: int, steps: int, interval_ms: int) -> dict:
        gates = self.hold_workers()
        ids = parallel(lambda _: self.submit(steps, interval_ms), range(jobs))
        return {"gates": gates, "ids": ids, "final": steps + 2}  # running, the steps, succeeded

    def release(self, handle: dict) -> None:
        self.release_workers(handle["gates"])

    def finish(self, handle: dict) -> dict:
        """Events published, from the seq counters in Redis (what the workers really published)."""
        client = redis.Redis.from_url(self.redis.url)
        published = sum(int(client.get(f"jobcast:job:{i}:seq") or 0) for i in handle["ids"])
        client.close()
        return {"published": published, "pub_cpu_s": 0.0}

    def ws_url(self, job_id: str) -> str:
        return f"{self.ws_base}/ws/jobs/{job_id}/"

    def idle_target(self) -> tuple[str, callable]:
        """A queued job (every worker held), so its sockets get a snapshot and then nothing."""
        gates = self.hold_workers()
        job_id = self.submit(1, 0)

        def cleanup():
            self.http.post(f"/api/jobs/{job_id}/cancel/")
            self.release_workers(gates)

        return job_id, cleanup

    def e2e_spec(self) -> dict:
        return {"system": "jobcast", "http_base": self.url, "ws_base": self.ws_base, "headers": self.headers}

    def stop(self) -> None:
        self.http.close()
        for worker in self.extra_workers:
            stop_process(worker, signal.SIGTERM, timeout=60)
        stop_process(self.process, signal.SIGINT, timeout=60)
        self.redis.stop()


class Stock(System):
    name = "stock"

    def start(self, workdir: Path) -> None:
        self.redis = start_redis(workdir / "redis")
        self.env = bench_env(REDIS_URL=self.redis.url)
        self.port = free_port()
        self.url, self.ws_base = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        log = open(workdir / "stock.log", "wb")
        # uvicorn as the Channels tutorial runs it (its websockets implementation and per-message
        # deflate by default), with uvloop and httptools as jobcast's ws tier has them.
        self.server = subprocess.Popen(
            [PY, "-m", "uvicorn", "bench.stock.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--loop", "uvloop", "--http", "httptools", "--ws", "websockets", "--ws-max-size", "65536",
             "--lifespan", "off", "--no-access-log", "--log-level", "warning"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.worker = subprocess.Popen(
            [PY, "-m", "celery", "-A", "bench.stock.tasks", "worker", "-c", str(self.concurrency), "-l", "warning",
             "-n", f"stock-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port), 60, "stock uvicorn")
        from celery import Celery

        self.celery = Celery("stock-bench", broker=self.redis.url)
        self.client = redis.Redis.from_url(self.redis.url)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.release_workers(self.hold_workers())  # the worker is up and consuming

    def tiers(self):
        return {"ws": [self.server.pid], "pub": descendants(self.worker.pid), "redis": [self.redis.process.pid],
                "front": []}

    def hold_workers(self) -> int:
        self.client.delete("bench:gate", "bench:gates_running")
        for _ in range(self.concurrency):
            self.celery.send_task("stock.gate", args=[GATE_SECONDS])
        wait_until(lambda: int(self.client.get("bench:gates_running") or 0) == self.concurrency, 90,
                   "the stock gate tasks to run", interval=0.1)
        return self.concurrency

    def release_workers(self, gates: int) -> None:
        self.client.rpush("bench:gate", *["go"] * gates)
        wait_until(lambda: int(self.client.get("bench:gates_running") or 0) == 0, 30, "the stock gates to open",
                   interval=0.05)

    def submit(self, steps: int, interval_ms: int) -> str:
        response = self.http.post("/api/jobs/", json={"steps": steps, "interval_ms": interval_ms})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def prepare(self, jobs, steps, interval_ms):
        gates = self.hold_workers()
        ids = parallel(lambda _: self.submit(steps, interval_ms), range(jobs))
        return {"gates": gates, "ids": ids, "final": steps + 2}

    def release(self, handle):
        self.release_workers(handle["gates"])

    def finish(self, handle):
        return {"published": len(handle["ids"]) * handle["final"], "pub_cpu_s": 0.0}

    def ws_url(self, job_id):
        return f"{self.ws_base}/ws/jobs/{job_id}/"

    def idle_target(self):
        return str(uuid.uuid4()), lambda: None

    def e2e_spec(self):
        return {"system": "stock", "http_base": self.url, "ws_base": self.ws_base}

    def stop(self):
        self.http.close()
        self.client.close()
        stop_process(self.worker, signal.SIGQUIT, timeout=30)  # cold shutdown: nothing runs any more
        stop_process(self.server, signal.SIGTERM, timeout=30)
        self.redis.stop()


class Raw(System):
    name = "raw"

    def start(self, workdir: Path) -> None:
        self.redis = start_redis(workdir / "redis")
        self.env = bench_env(REDIS_URL=self.redis.url)
        self.port = free_port()
        self.url, self.ws_base = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.server = subprocess.Popen([PY, "-m", "bench.raw", "serve", str(self.port)], env=self.env, cwd=REPO)
        self.helpers: list[subprocess.Popen] = []
        wait_until(lambda: port_open(self.port), 30, "raw server")

    def tiers(self):
        # The publishers' CPU comes from their own report (they start and end within a scenario).
        return {"ws": [self.server.pid], "pub": [], "redis": [self.redis.process.pid], "front": []}

    def prepare(self, jobs, steps, interval_ms):
        ids = [str(uuid.uuid4()) for _ in range(jobs)]
        return {"ids": ids, "final": steps + 2, "spec": {"jobs": ids, "steps": steps, "interval_ms": interval_ms,
                                                         "slots": self.concurrency, "timeout": 600}}

    def release(self, handle):
        handle["process"] = self.spawn("publish", json.dumps(handle["spec"]))

    def spawn(self, *args: str) -> subprocess.Popen:
        process = subprocess.Popen([PY, "-m", "bench.raw", *args], env=self.env, cwd=REPO, stdout=subprocess.PIPE,
                                   text=True)
        self.helpers.append(process)
        return process

    def collect(self, process: subprocess.Popen, timeout: float = 600) -> dict:
        out, _ = process.communicate(timeout=timeout)
        self.helpers.remove(process)
        return json.loads(out.strip().splitlines()[-1])

    def finish(self, handle):
        out = self.collect(handle["process"])
        return {"published": out["published"], "pub_cpu_s": out["cpu_seconds"]}

    def ws_url(self, job_id):
        return f"{self.ws_base}/ws/jobs/{job_id}/"

    def idle_target(self):
        return str(uuid.uuid4()), lambda: None

    def group_members(self):
        return None  # the raw server keeps its subscriptions in memory, not in Redis

    def e2e_spec(self):
        return {"system": "raw", "http_base": self.url, "ws_base": self.ws_base}

    def stop(self):
        for process in self.helpers:
            stop_process(process)
        stop_process(self.server)
        self.redis.stop()


SYSTEMS = {"jobcast": Jobcast, "stock": Stock, "raw": Raw}
