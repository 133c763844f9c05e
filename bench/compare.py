"""`make bench`: jobcast vs the stock Channels path vs a raw pub/sub server, in one run.

Starts every system as real processes on 127.0.0.1 (own redis-server each), drives them
with the load generator (bench/loadgen.py, a separate process), alternates the systems,
and writes docs/benchmarks.md and docs/benchmarks.png. `--quick` runs small sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobcast.cli.stack import free_port, port_open  # noqa: E402
from tests.e2e.conftest import start_stack  # noqa: E402
from tests.support import start_redis, stop_process, wait_until  # noqa: E402

PY = sys.executable
CONCURRENCY = 8  # worker processes for jobcast and stock alike (the jobs mostly wait)


def proc_stats(pids: list[int]) -> tuple[float, int]:
    """CPU seconds used and RSS bytes of these processes."""
    cpu, rss = 0.0, 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
    return cpu, rss


def group_members(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    return sum(client.zcard(key) for key in client.scan_iter("asgi:group:*"))


class Jobcast:
    name = "jobcast"

    def start(self, workdir: Path):
        self.stack, self.stop_stack = start_stack(
            workdir, JOBCAST_FRONT_DOOR="nginx", JOBCAST_KIND_MODULES="bench.kinds", JOBCAST_PROGRESS_MAX_RATE="0",
            JOBCAST_SUBMIT_RATE_PER_MINUTE="0", JOBCAST_WS_MAX_CONNECTIONS_PER_USER="100000",
            JOBCAST_WORKER_CONCURRENCY=str(CONCURRENCY), JOBCAST_LOG_LEVEL="warning",
            PYTHONPATH=str(REPO), DJANGO_SETTINGS_MODULE="jobcast.settings",
        )
        self.token = self.stack.token("bench")
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.redis_url = self._redis_url()

    def _redis_url(self) -> str:
        text = self.stack.log.read_text()
        port = text.split("local Redis on 127.0.0.1:")[1].split()[0]
        return f"redis://127.0.0.1:{port}/0"

    def jobs(self, count: int, steps: int, interval_ms: float, start_at: float) -> tuple[list[str], int]:
        with httpx.Client(base_url=self.stack.url, headers=self.headers, timeout=30) as client:
            ids = [client.post("/api/jobs/", json={"kind": "bench.burst", "params": {
                "steps": steps, "interval_ms": interval_ms, "start_at": start_at}}).json()["id"] for _ in range(count)]
        return ids, steps + 2  # running, the progress events, succeeded

    def url(self, job_id: str) -> str:
        return f"{self.stack.ws_url}/ws/jobs/{job_id}/?after=0"

    def ws_pids(self) -> list[int]:
        return self.stack.pids("jobcast.ws.server")

    def stop(self):
        self.stop_stack()


class Stock:
    name = "stock"

    def start(self, workdir: Path):
        self.redis = start_redis(workdir / "redis")
        self.redis_url = self.redis.url
        env = {**os.environ, "REDIS_URL": self.redis.url, "PYTHONPATH": str(REPO)}
        self.port = free_port()
        self.server = subprocess.Popen(
            [PY, "-m", "uvicorn", "bench.stock.asgi:application", "--port", str(self.port), "--loop", "uvloop",
             "--ws", "websockets", "--log-level", "warning"], env=env, cwd=REPO)
        self.worker = subprocess.Popen(
            [PY, "-m", "celery", "-A", "bench.stock.tasks", "worker", "-c", str(CONCURRENCY), "-l", "warning",
             "--without-gossip", "--without-mingle"], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 30, "stock uvicorn")
        from celery import Celery

        self.celery = Celery(broker=self.redis.url)
        self.headers = {}
        time.sleep(3)  # the worker connects

    def jobs(self, count, steps, interval_ms, start_at):
        ids = [f"stock{n}-{int(start_at)}" for n in range(count)]
        for job_id in ids:
            self.celery.send_task("stock.burst", args=[job_id, steps, interval_ms, start_at])
        return ids, steps

    def url(self, job_id):
        return f"ws://127.0.0.1:{self.port}/ws/jobs/{job_id}/"

    def ws_pids(self):
        return [self.server.pid]

    def stop(self):
        stop_process(self.worker, signal.SIGQUIT)
        stop_process(self.server)
        self.redis.stop()


class Raw:
    name = "raw"

    def start(self, workdir: Path):
        self.redis = start_redis(workdir / "redis")
        self.redis_url = self.redis.url
        self.env = {**os.environ, "REDIS_URL": self.redis.url, "PYTHONPATH": str(REPO)}
        self.port = free_port()
        self.server = subprocess.Popen([PY, "-m", "bench.raw", "serve", str(self.port)], env=self.env, cwd=REPO)
        wait_until(lambda: port_open(self.port), 30, "raw server")
        self.headers = {}
        self.publishers = []

    def jobs(self, count, steps, interval_ms, start_at):
        self.publishers.append(subprocess.Popen(
            [PY, "-m", "bench.raw", "publish", str(count), str(steps), str(interval_ms), str(start_at)],
            env=self.env, cwd=REPO))
        return [f"raw{n}" for n in range(count)], steps

    def url(self, job_id):
        return f"ws://127.0.0.1:{self.port}/ws/jobs/{job_id}/"

    def ws_pids(self):
        return [self.server.pid]

    def stop(self):
        for publisher in self.publishers:
            stop_process(publisher)
        stop_process(self.server)
        self.redis.stop()


def loadgen(spec: dict, timeout: float) -> dict:
    done = subprocess.run([PY, "-m", "bench.loadgen"], input=json.dumps(spec), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def events_scenario(system, jobs: int, watchers: int, steps: int, interval_ms: float) -> dict:
    connect_budget = 3 + jobs * watchers / 150
    start_at = time.time() + connect_budget + jobs * 0.02
    ids, last_seq = system.jobs(jobs, steps, interval_ms, start_at)
    urls = [system.url(job_id) for job_id in ids for _ in range(watchers)]
    cpu0, _ = proc_stats(system.ws_pids())
    run_time = steps * interval_ms / 1000 * max(1, jobs / CONCURRENCY) + 60
    result = loadgen({"mode": "events", "urls": urls, "headers": system.headers, "last_seq": last_seq,
                      "expected_per_watcher": last_seq, "timeout": connect_budget + run_time}, connect_budget + run_time + 60)
    cpu1, rss = proc_stats(system.ws_pids())
    result.update(ws_cpu_seconds=cpu1 - cpu0, ws_rss_mb=rss / 2**20)
    if system.name == "raw":
        for publisher in system.publishers:
            publisher.wait(timeout=120)
    return result


def idle_scenario(system, connections: int) -> dict:
    ids, _ = system.jobs(1, 1, 0, time.time() + 3600)  # a job that waits: its socket stays idle
    urls = [system.url(ids[0]).replace("?after=0", "") for _ in range(connections)]
    _, rss_before = proc_stats(system.ws_pids())
    spec = {"mode": "idle", "urls": urls, "headers": system.headers, "hold": 8}
    proc = subprocess.Popen([PY, "-m", "bench.loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    proc.stderr.readline()  # READY
    time.sleep(2)
    _, rss_after = proc_stats(system.ws_pids())
    result = json.loads(proc.stdout.read().strip().splitlines()[-1])
    proc.wait(timeout=60)
    result["rss_kb_per_connection"] = (rss_after - rss_before) / 1024 / max(1, result["open"])
    return result


def storm_scenario(system, connections: int) -> dict:
    ids, _ = system.jobs(1, 1, 0, time.time() + 3600)
    urls = [system.url(ids[0]).replace("?after=0", "") for _ in range(connections)]
    result = loadgen({"mode": "storm", "urls": urls, "headers": system.headers}, 300)
    time.sleep(3)
    result["group_members_left"] = group_members(system.redis_url) if system.name != "raw" else 0
    return result


SIZES = {
    "full": {"A": (50, 1, 100, 10), "B": (1, 500, 300, 2), "C": (50, 4, 200, 0), "D": 2000, "F": 1000},
    "quick": {"A": (10, 1, 50, 10), "B": (1, 100, 100, 2), "C": (10, 4, 100, 0), "D": 300, "F": 200},
}
SYSTEMS = [Jobcast, Stock, Raw]


def run_round(order, sizes, workdir: Path, round_no: int) -> dict:
    results = {}
    for cls in order:
        system = cls()
        folder = workdir / f"{cls.name}-{round_no}"
        folder.mkdir(parents=True)
        system.start(folder)
        try:
            for scenario in ("A", "B", "C"):
                results[(cls.name, scenario)] = events_scenario(system, *sizes[scenario])
                print(cls.name, scenario, results[(cls.name, scenario)], flush=True)
            results[(cls.name, "D")] = idle_scenario(system, sizes["D"])
            print(cls.name, "D", results[(cls.name, "D")], flush=True)
            results[(cls.name, "F")] = storm_scenario(system, sizes["F"])
            print(cls.name, "F", results[(cls.name, "F")], flush=True)
        finally:
            system.stop()
    return results


def fmt(value, digits=1, scale=1.0):
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def write_report(rounds: list[dict], sizes: dict, mode: str, seconds: float) -> None:
    lines = [
        "# Benchmarks", "",
        f"Written by `make bench` (`python -m bench.compare{' --quick' if mode == 'quick' else ''}`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, in {seconds / 60:.1f} min. "
        "All three systems ran on this machine with the same load generator (a separate process), one round after "
        "the other in alternating order; each number below is from one round, so the spread between rounds shows "
        "the noise. jobcast runs with `JOBCAST_PROGRESS_MAX_RATE=0` (no coalescing), behind its nginx front door; "
        f"jobcast and stock both have {CONCURRENCY} worker processes. Latency is publish (the event's `ts`) to receipt.",
        "", "Sizes: " + ", ".join(f"{k}: {v}" for k, v in sizes.items()) +
        " (events scenarios: jobs, watchers per job, steps, ms between steps).", "",
        "## Event delivery (A: many jobs, one watcher; B: one job, many watchers; C: saturation)", "",
        "| scenario | system | round | delivered | lost | dup | events/s | p50 ms | p95 ms | p99 ms | ws CPU s | ws RSS MB | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in ("A", "B", "C"):
        for name in ("jobcast", "stock", "raw"):
            for i, results in enumerate(rounds, 1):
                r = results[(name, scenario)]
                lines.append(
                    f"| {scenario} | {name} | {i} | {r['delivered']:,} | {r['lost']:,} | {r['duplicated']:,} | "
                    f"{fmt(r['events_per_s'], 0)} | {fmt(r['p50'], 1, 1e3)} | {fmt(r['p95'], 1, 1e3)} | "
                    f"{fmt(r['p99'], 1, 1e3)} | {fmt(r['ws_cpu_seconds'], 2)} | {fmt(r['ws_rss_mb'], 0)} | {r['errors']} |")
    lines += ["", "## Idle connections (D) and connection storm (F)", "",
              "| system | round | D: open | D: RSS KB per connection | F: handshakes | F: errors | F: s until all live | F: group members left |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("jobcast", "stock", "raw"):
        for i, results in enumerate(rounds, 1):
            d, f = results[(name, "D")], results[(name, "F")]
            lines.append(f"| {name} | {i} | {d['open']:,} | {fmt(d['rss_kb_per_connection'], 1)} | {f['handshakes']:,} | "
                         f"{f['errors']} {','.join(f['error_kinds'])} | {fmt(f['seconds_until_all_live'], 2)} | {f['group_members_left']} |")
    lines += ["", "## Ratios against raw (median of rounds)", ""]
    lines += ratio_lines(rounds)
    lines += ["", "![delivered events/s and p99 latency](benchmarks.png)", ""]
    (REPO / "docs" / "benchmarks.md").write_text("\n".join(lines) + "\n")
    plot(rounds)


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def ratio_lines(rounds) -> list[str]:
    def m(name, scenario, key):
        return median([r[(name, scenario)][key] for r in rounds])

    out = []
    c_j, c_r, c_s = m("jobcast", "C", "events_per_s"), m("raw", "C", "events_per_s"), m("stock", "C", "events_per_s")
    if c_j and c_r:
        out.append(f"- C, delivered events/s: jobcast {c_j / c_r:.0%} of raw (target ≥ 50 %)"
                   + (f"; {c_j / c_s:.1f}× stock" if c_s else "") + ".")
    for scenario in ("A", "B"):
        j, r = m("jobcast", scenario, "p99"), m("raw", scenario, "p99")
        if j and r:
            out.append(f"- {scenario}, p99 latency: jobcast {j / r:.1f}× raw (target ≤ 2×).")
    j, r = m("jobcast", "D", "rss_kb_per_connection"), m("raw", "D", "rss_kb_per_connection")
    if j and r:
        out.append(f"- D, RSS per idle connection: jobcast {j / r:.1f}× raw (target ≤ 1.5×).")
    lost = sum(r[("jobcast", s)]["lost"] + r[("jobcast", s)]["duplicated"] for r in rounds for s in "ABC")
    out.append(f"- jobcast lost + duplicated events over all rounds: {lost} (target 0).")
    return out


def plot(rounds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, scenarios = ["jobcast", "stock", "raw"], ["A", "B", "C"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.27
    for i, name in enumerate(names):
        xs = [s + (i - 1) * width for s in range(len(scenarios))]
        rate = [median([r[(name, sc)]["events_per_s"] for r in rounds]) or 0 for sc in scenarios]
        p99 = [(median([r[(name, sc)]["p99"] for r in rounds]) or 0) * 1e3 for sc in scenarios]
        left.bar(xs, rate, width, label=name)
        right.bar(xs, p99, width, label=name)
    for axis, title in ((left, "delivered events/s"), (right, "p99 latency (ms)")):
        axis.set_xticks(range(len(scenarios)), scenarios)
        axis.set_title(title)
        axis.legend()
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(REPO / "docs" / "benchmarks.png", dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rounds = []
        for round_no in range(args.rounds):
            order = SYSTEMS if round_no % 2 == 0 else list(reversed(SYSTEMS))
            rounds.append(run_round(order, sizes, Path(tmp), round_no))
    write_report(rounds, sizes, mode, time.monotonic() - started)
    print(f"wrote docs/benchmarks.md in {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
