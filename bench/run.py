"""`make bench`: jobcast vs the stock Channels path vs a raw pub/sub server, in one run.

    python bench/run.py [--quick] [--rounds N] [--only A,B,...] [--no-profile] [--no-scale] [--no-ablation]
                        [--compare COMMIT] [--out DIR]

Starts each system as real processes on 127.0.0.1 with its own redis-server (bench/systems.py),
drives them with the load generator (bench/loadgen.py, a separate process), alternates the
systems' order from scenario to scenario and round to round, and writes docs/benchmarks.md
and docs/benchmarks.png (bench/report.py). The full run takes about 15 minutes on 2 cores;
`--quick` (one round, small sizes) about 2 minutes. `--compare COMMIT` adds a before/after
of a change: B and C on COMMIT (a git worktree) and on this checkout, alternating, in the
same run; `--out DIR` writes the report and its numbers there instead of over docs/.

Scenarios (full sizes; --quick is smaller):
  A  200 jobs x 1 watcher, 100 steps 10 ms apart         latency under a paced load
  B  1 job x 500 watchers, 1000 steps 2 ms apart         fan-out to many sockets
  C  50 jobs x 4 watchers, 500 steps, no pause           delivered events/s at saturation
  D  2,000 idle sockets                                  ws server RSS per connection
  E  tiny jobs (1 step) through 16 clients               jobs/s, submit -> terminal event
  F  1,000 handshakes at once, then all closed at once   errors, time to live, groups left
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import ablation, report  # noqa: E402
from bench.systems import SYSTEMS, Jobcast, bench_env, cpu_seconds, rss_bytes  # noqa: E402
from tests.support import start_redis, stop_process  # noqa: E402

PY = sys.executable
CONCURRENCY = 8  # worker processes (Celery pool / raw publisher slots) for every system
ORDER = ["jobcast", "stock", "raw"]
RESULTS = REPO / "bench" / "results" / "latest.json"  # the raw numbers; `python -m bench.report` rewrites the doc
SCENARIOS = ["D", "F", "A", "B", "C", "E"]  # D first: RSS per connection of fresh processes

SIZES = {
    "full": {
        "A": {"jobs": 200, "watchers": 1, "steps": 100, "interval_ms": 10},
        "B": {"jobs": 1, "watchers": 500, "steps": 1000, "interval_ms": 2},
        "C": {"jobs": 50, "watchers": 4, "steps": 500, "interval_ms": 0},
        "D": {"connections": 2000},
        "E": {"jobs": 300, "clients": 16},
        "F": {"connections": 1000},
    },
    "quick": {
        "A": {"jobs": 24, "watchers": 1, "steps": 50, "interval_ms": 10},
        "B": {"jobs": 1, "watchers": 100, "steps": 200, "interval_ms": 2},
        "C": {"jobs": 10, "watchers": 4, "steps": 100, "interval_ms": 0},
        "D": {"connections": 300},
        "E": {"jobs": 40, "clients": 8},
        "F": {"connections": 200},
    },
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Loadgen:
    """One load-generator process: spec on stdin, `READY n` on stderr, result on stdout."""

    def __init__(self, spec: dict):
        self.process = subprocess.Popen([PY, "-m", "bench.loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO, env=bench_env())
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("READY"):
                return int(line.split()[1])
        self.process.kill()
        raise RuntimeError(f"load generator not ready: {''.join(self.stderr)[-2000:]}")

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict:
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
            raise RuntimeError(f"load generator did not finish within {timeout:.0f} s")
        if self.process.returncode != 0:
            raise RuntimeError(f"load generator failed: {''.join(self.stderr)[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])


class Meter:
    """CPU seconds per tier over a window, and the ws tier's RSS at its end."""

    def __init__(self, system):
        self.system = system
        self.tiers = system.tiers()
        self.cpu0 = {tier: cpu_seconds(pids) for tier, pids in self.tiers.items()}
        self.started = time.monotonic()

    def stop(self) -> dict:
        cpu = {f"{tier}_cpu_s": cpu_seconds(pids) - self.cpu0[tier] for tier, pids in self.tiers.items()}
        return {**cpu, "wall_s": time.monotonic() - self.started, "ws_rss_mb": rss_bytes(self.tiers["ws"]) / 2**20}


def events_scenario(system, jobs: int, watchers: int, steps: int, interval_ms: int, profile=None) -> dict:
    handle = system.prepare(jobs, steps, interval_ms)
    targets = [{"url": system.ws_url(job_id), "final": handle["final"]} for job_id in handle["ids"] for _ in range(watchers)]
    waves = -(-jobs // CONCURRENCY)
    paced = waves * steps * (interval_ms / 1000 + 0.001)
    timeout = min(600.0, 60 + 3 * paced + len(targets) * (steps + 2) / 1000)
    loadgen = Loadgen({"mode": "watch", "targets": targets, "headers": system.headers, "resume": system.resume,
                       "timeout": timeout})
    loadgen.ready(180)
    system.settle(15)
    meter = Meter(system)
    spies = profile.start(system) if profile else []
    system.release(handle)
    result = loadgen.result(timeout + 60)
    measured = meter.stop()
    finished = system.finish(handle)
    measured["pub_cpu_s"] += finished.pop("pub_cpu_s")  # the raw publisher reports its own CPU
    result.update(measured, **finished)
    if profile:
        profile.stop(spies)
    return result


def idle_scenario(system, connections: int) -> dict:
    job_id, cleanup = system.idle_target()
    try:
        system.settle(15)
        tiers = system.tiers()
        rss0, front0 = rss_bytes(tiers["ws"]), rss_bytes(tiers["front"])
        cpu0 = cpu_seconds(tiers["ws"])
        loadgen = Loadgen({"mode": "idle", "urls": [system.ws_url(job_id)] * connections, "headers": system.headers,
                           "hold": 120})
        opened = loadgen.ready(180)
        system.settle(10)
        rss1, front1 = rss_bytes(tiers["ws"]), rss_bytes(tiers["front"])
        cpu1 = cpu_seconds(tiers["ws"])
        loadgen.send("CLOSE")
        result = loadgen.result(120)
    finally:
        cleanup()
    result.update(
        rss_before_mb=rss0 / 2**20, rss_after_mb=rss1 / 2**20,
        rss_kb_per_connection=(rss1 - rss0) / 1024 / max(1, opened),
        front_rss_kb_per_connection=(front1 - front0) / 1024 / max(1, opened) if tiers["front"] else None,
        ws_cpu_s=cpu1 - cpu0,
    )
    return result


def storm_scenario(system, connections: int) -> dict:
    job_id, cleanup = system.idle_target()
    try:
        system.settle(15)
        before = system.group_members()
        meter = Meter(system)
        loadgen = Loadgen({"mode": "storm", "urls": [system.ws_url(job_id)] * connections, "headers": system.headers,
                           "hold": 2})
        result = loadgen.result(300)
        result.update(meter.stop())
        # Group membership left in Redis once every socket is closed (stock and jobcast keep it there).
        left, waited = before, 0.0
        if before is not None:
            started = time.monotonic()
            while True:
                left = system.group_members()
                waited = time.monotonic() - started
                if left <= before or waited > 10:
                    break
                time.sleep(0.25)
        result.update(group_members_before=before, group_members_left=left, seconds_until_groups_clean=waited)
    finally:
        cleanup()
    return result


def e2e_scenario(system, jobs: int, clients: int) -> dict:
    system.settle(15)
    timeout = 300
    worker = system.spawn("worker", str(CONCURRENCY), str(jobs), str(timeout)) if system.name == "raw" else None
    meter = Meter(system)
    loadgen = Loadgen({"mode": "e2e", **system.e2e_spec(), "jobs": jobs, "clients": clients, "steps": 1,
                       "timeout": timeout})
    result = loadgen.result(timeout + 60)
    result.update(meter.stop())
    if worker is not None:
        try:
            result["pub_cpu_s"] += system.collect(worker, timeout=15)["cpu_seconds"]
        except subprocess.TimeoutExpired:
            stop_process(worker)
            system.helpers.remove(worker)
    return result


def redis_benchmark(workdir: Path, payload_bytes: int) -> dict:
    """The broker's ceiling: redis-benchmark PUBLISH (no subscriber), plain and pipelined."""
    binary = subprocess.run(["which", "redis-benchmark"], capture_output=True, text=True).stdout.strip()
    if not binary:
        return {}
    server = start_redis(workdir / "redis-benchmark")
    out = {}
    try:
        for name, extra in (("publish", []), ("publish_pipelined_16", ["-P", "16"])):
            done = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(server.port), "-c", "50", "-n", "200000", "--csv",
                                   *extra, "publish", "job:bench", "x" * payload_bytes],
                                  capture_output=True, text=True, timeout=120)
            rows = [line.split('","') for line in done.stdout.splitlines() if line.startswith('"') and "rps" not in line]
            out[name] = float(rows[-1][1].strip('"')) if rows else None
    finally:
        server.stop()
    return out


class Profile:
    """py-spy on jobcast's ws process and its Celery worker tree while a scenario runs."""

    def __init__(self, workdir: Path, label: str):
        self.binary = Path(PY).parent / "py-spy"
        self.workdir, self.label = workdir, label
        self.files: dict[str, Path] = {}

    def start(self, system) -> list:
        tiers = system.tiers()
        spies = []
        for tier, pid, extra in (("ws", tiers["ws"][0], []),
                                 ("worker", min(tiers["pub"]), ["--subprocesses"])):
            path = self.workdir / f"profile-{self.label}-{tier}.txt"
            self.files[tier] = path
            spies.append(subprocess.Popen([str(self.binary), "record", "-p", str(pid), "-o", str(path), "-f", "raw",
                                           "-r", "100", "-d", "300", *extra],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)
        return spies

    def stop(self, spies) -> None:
        for spy in spies:
            stop_process(spy, signal.SIGINT, timeout=30)


def run_scenario(system, scenario: str, size: dict) -> dict:
    if scenario in "ABC":
        return events_scenario(system, **size)
    if scenario == "D":
        return idle_scenario(system, size["connections"])
    if scenario == "E":
        return e2e_scenario(system, size["jobs"], size["clients"])
    return storm_scenario(system, size["connections"])


def run_round(round_no: int, sizes: dict, scenarios: list[str], workdir: Path, names: list[str]) -> dict:
    systems = {}
    try:
        for name in names:
            log(f"round {round_no}: starting {name}")
            system = SYSTEMS[name](CONCURRENCY)
            system.start(workdir / f"round{round_no}-{name}")
            systems[name] = system
        results = {}
        for index, scenario in enumerate(scenarios):
            shift = index + round_no
            order = names[shift % len(names):] + names[:shift % len(names)]
            if round_no % 2:
                order.reverse()
            for name in order:
                started = time.monotonic()
                try:
                    result = run_scenario(systems[name], scenario, sizes[scenario])
                except Exception as exc:  # noqa: BLE001 - a failed scenario is reported, the run goes on
                    traceback.print_exc()
                    result = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                results[f"{name}/{scenario}"] = result
                brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "timeline"}
                log(f"round {round_no} {scenario} {name} ({time.monotonic() - started:.0f} s): {json.dumps(brief)}")
        return results
    finally:
        for name, system in systems.items():
            started = time.monotonic()
            try:
                system.stop()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
            log(f"stopped {name} in {time.monotonic() - started:.0f} s")


FULL_B = {"jobs": 1, "watchers": 500, "steps": 1000, "interval_ms": 2}  # the issue's B


def extra_pass(sizes: dict, workdir: Path, full_b: bool, profile: bool) -> tuple[dict, dict]:
    """On fresh systems: the issue's full-size B once (raw, then jobcast), then B and C on jobcast
    with py-spy attached (not part of the measured rounds)."""
    profile = profile and (Path(PY).parent / "py-spy").exists()
    if not (full_b or profile):
        return {}, {}
    systems, big, profiles = {}, {}, {}
    try:
        for name in (["raw", "jobcast"] if full_b else ["jobcast"]):
            systems[name] = SYSTEMS[name](CONCURRENCY)
            systems[name].start(workdir / f"extra-{name}")
        if full_b:
            for name in ("raw", "jobcast"):
                try:
                    big[name] = events_scenario(systems[name], **FULL_B)
                except Exception as exc:  # noqa: BLE001
                    traceback.print_exc()
                    big[name] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                brief = {k: v for k, v in big[name].items() if k != "timeline"}
                log(f"full-size B {name}: {json.dumps(brief)}")
        if profile:
            for scenario in ("B", "C"):
                spy = Profile(workdir, scenario)
                log(f"profile: jobcast {scenario} under py-spy")
                result = events_scenario(systems["jobcast"], **sizes[scenario], profile=spy)
                profiles[scenario] = {"result": result, "stacks": {
                    tier: report.summarize_profile(path) for tier, path in spy.files.items() if path.exists()}}
    finally:
        for system in systems.values():
            system.stop()
    return big, profiles


SCALE_CONFIGS = [(1, 1), (2, 1), (1, 2), (2, 2)]  # (ws processes, worker instances of CONCURRENCY // 2)


def scale_pass(size: dict, workdir: Path, rounds: int = 1) -> list[dict]:
    """Scenario C on jobcast with 1 and 2 ws processes and 1 and 2 worker instances."""
    out = []
    for ws, workers in SCALE_CONFIGS:
        system = Jobcast(CONCURRENCY // 2, ws_instances=ws, worker_instances=workers)
        entry = {"ws_processes": ws, "worker_instances": workers, "worker_processes": workers * (CONCURRENCY // 2),
                 "runs": []}
        try:
            system.start(workdir / f"scale-{ws}-{workers}")
            for n in range(rounds):
                try:
                    result = events_scenario(system, **size)
                except Exception as exc:  # noqa: BLE001
                    traceback.print_exc()
                    result = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                entry["runs"].append({k: v for k, v in result.items() if k != "timeline"})
                log(f"scale C ws={ws} workers={workers} run {n + 1}: "
                    f"{json.dumps({k: v for k, v in entry['runs'][-1].items() if k in ('events_per_s', 'lost', 'duplicated', 'ws_cpu_s', 'pub_cpu_s', 'failed')})}")
        finally:
            system.stop()
        out.append(entry)
    return out


ABLATION_SCENARIOS = ["B", "C"]


def ablation_pass(sizes: dict, workdir: Path, rounds: int = 1, compared=None) -> list[dict]:
    """B and C on earlier commits of jobcast and on this checkout, alternating, in one run."""
    versions, trees = [], []
    try:
        for label, commit in compared or ablation.VERSIONS:
            if commit is None:
                versions.append({"label": label, "commit": "this checkout", "system": Jobcast(CONCURRENCY)})
                continue
            try:
                python, tree = ablation.checkout(commit, workdir / "ablation")
            except (subprocess.SubprocessError, OSError) as exc:  # no git history here (a source tarball)
                log(f"ablation skipped: cannot check out {commit}: {exc}")
                return []
            trees.append(tree)
            versions.append({"label": label, "commit": commit, "system": Jobcast(CONCURRENCY, python=python, repo=tree)})
        for v in versions:
            v["system"].start(workdir / f"ablation-{v['commit'].replace(' ', '-')}")
            v["runs"] = {s: [] for s in ABLATION_SCENARIOS}
        for n in range(rounds):
            for scenario in ABLATION_SCENARIOS:
                order = versions if n % 2 == 0 else versions[::-1]
                for v in order:
                    try:
                        result = events_scenario(v["system"], **sizes[scenario])
                    except Exception as exc:  # noqa: BLE001
                        traceback.print_exc()
                        result = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                    v["runs"][scenario].append({k: x for k, x in result.items() if k != "timeline"})
                    log(f"ablation {scenario} {v['commit']} run {n + 1}: events/s "
                        f"{result.get('events_per_s', 0):.0f}, p99 {result.get('p99', 0):.3f} s, "
                        f"lost {result.get('lost')}, dup {result.get('duplicated')}")
    finally:
        for v in versions:
            try:
                v["system"].stop()
            except Exception:  # noqa: BLE001 - a version that never started has nothing to stop
                pass
        for tree in trees:
            ablation.remove(tree)
    return [{k: x for k, x in v.items() if k != "system"} for v in versions]


def machine() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    import channels
    import channels_redis
    import django
    import redis
    import uvicorn
    import websockets
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem, 1), "kernel": platform.release(),
        "python": platform.python_version(), "redis": " ".join(first(["redis-server", "--version"]).split()[:3]),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "packages": f"Django {django.__version__}, channels {channels.__version__}, channels-redis "
                    f"{channels_redis.__version__}, redis-py {redis.__version__}, uvicorn {uvicorn.__version__}, "
                    f"websockets {websockets.__version__}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of small sizes (~2 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 2, --quick: 1)")
    parser.add_argument("--only", help="comma-separated scenarios, e.g. A,C")
    parser.add_argument("--systems", default=",".join(ORDER), help="a subset of jobcast,stock,raw (for diagnosis)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy pass")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale-out pass (C with 1-2 ws and workers)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the pass over earlier commits (B, C)")
    parser.add_argument("--compare", metavar="COMMIT",
                        help="before/after of a change: B and C on COMMIT and on this checkout, alternating (also with --quick)")
    parser.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md and .png go")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    rounds = args.rounds or (1 if args.quick else 2)
    scenarios = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jobcast-bench-") as tmp:
        workdir = Path(tmp)
        names = [n for n in ORDER if n in args.systems.split(",")]
        results = [run_round(n, sizes, scenarios, workdir, names) for n in range(rounds)]
        frame = next((r[k].get("frame_bytes") for r in results for k in r if k.startswith("jobcast/")
                      and r[k].get("frame_bytes")), 200)
        log("redis-benchmark")
        broker = redis_benchmark(workdir, int(frame))
        full_b, profile = extra_pass(sizes, workdir, full_b=not args.quick and "B" in scenarios
                                     and sizes["B"]["steps"] < FULL_B["steps"],
                                     profile=not (args.no_profile or args.quick))
        scale = [] if args.no_scale or args.quick else scale_pass(sizes["C"], workdir)
        if args.compare:
            compared = [(f"before ({args.compare})", args.compare), ("after (this checkout)", None)]
            changes = ablation_pass(sizes, workdir, rounds=2, compared=compared)
        else:
            changes = [] if args.no_ablation or args.quick else ablation_pass(sizes, workdir)
    seconds = time.monotonic() - started
    meta = {"mode": mode, "rounds": rounds, "sizes": sizes, "full_b": full_b, "full_b_size": FULL_B, "scenarios": scenarios, "concurrency": CONCURRENCY,
            "seconds": seconds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "broker": broker, "argv": " ".join(sys.argv[1:]), "scale": scale, "ablation": changes}
    out = Path(args.out)
    # A run written elsewhere (a quick check) keeps its numbers there, not over the recorded run's.
    results_file = RESULTS if out == REPO / "docs" else out / "results.json"
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps({"meta": meta, "rounds": results, "profile": profile}, indent=1))
    report.write(out, meta, results, profile)
    log(f"wrote {out}/benchmarks.md in {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
