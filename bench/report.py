"""docs/benchmarks.md and docs/benchmarks.png from a run's numbers (bench/results/latest.json).

    python -m bench.report     rewrite the doc and the plot from the last run, without running it
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = ["jobcast", "stock", "raw"]
NOTES = REPO / "bench" / "notes.md"

# A Markdown link's target, up to an #anchor or the closing parenthesis.
LINK_TARGET = re.compile(r"(\]\(\s*<?)([^)\s#>]+)")


def notes_for_docs() -> str:
    """bench/notes.md as pasted at the end of docs/benchmarks.md: its relative links, written
    from bench/ (so they work where notes.md lies), re-pointed to work from docs/."""

    def repoint(match: re.Match) -> str:
        target = match[2]
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("/"):
            return match[0]  # a URL or an absolute path: the same from anywhere
        moved = os.path.relpath(os.path.normpath(NOTES.parent / target), REPO / "docs")
        return match[1] + Path(moved).as_posix()

    return LINK_TARGET.sub(repoint, NOTES.read_text().strip())


SCENARIO_TITLES = {
    "A": "many jobs, one watcher each, paced",
    "B": "one job, many watchers",
    "C": "saturation: no pause between steps",
    "D": "idle connections",
    "E": "tiny jobs end to end",
    "F": "connection storm",
}


# ---------------------------------------------------------------- helpers

def get(results: dict, name: str, scenario: str) -> dict:
    return results.get(f"{name}/{scenario}") or {}


def ok(r: dict) -> bool:
    return bool(r) and "failed" not in r


def fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    return f"{value * scale:,.{digits}f}"


def ms(value) -> str:
    if value is None:
        return "–"
    value *= 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def values(rounds, name, scenario, key):
    return [get(r, name, scenario).get(key) for r in rounds if ok(get(r, name, scenario))]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs, show) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return show(xs[0])
    return f"{show(statistics.median(xs))} ({show(min(xs))}–{show(max(xs))})"


def notes_for(r: dict) -> str:
    if not ok(r):
        return f"**failed**: {r.get('failed', 'not run')}" if r else "not run"
    bits = []
    if r.get("connect_errors"):
        bits.append("connect errors " + ", ".join(f"{k}×{v}" for k, v in r["connect_errors"].items()))
    if r.get("reconnects"):
        bits.append(f"{r['reconnects']} resumes")
    if r.get("resets"):
        bits.append(f"{r['resets']} reset snapshots")
    codes = {k: v for k, v in (r.get("close_codes") or {}).items() if k not in ("1000",)}
    if codes:
        bits.append("closes " + ", ".join(f"{k}×{v}" for k, v in codes.items()))
    if r.get("watchers_without_terminal"):
        bits.append(f"{r['watchers_without_terminal']} watchers never saw the end")
    return "; ".join(bits)


# ---------------------------------------------------------------- targets

def target_lines(rounds: list[dict], scenarios: list[str], full_b: dict | None = None) -> list[str]:
    rows = []

    def per_round(scenario, key, fn):
        out = []
        for i, r in enumerate(rounds, 1):
            j, raw = get(r, "jobcast", scenario), get(r, "raw", scenario)
            if ok(j) and ok(raw) and j.get(key) is not None and raw.get(key):
                out.append((i, fn(j[key], raw[key])))
        return out

    if any(s in scenarios for s in "ABC"):
        lost = sum(get(r, "jobcast", s).get("lost", 0) for r in rounds for s in "ABC")
        dup = sum(get(r, "jobcast", s).get("duplicated", 0) for r in rounds for s in "ABC")
        delivered = sum(get(r, "jobcast", s).get("delivered", 0) for r in rounds for s in "ABC")
        failed = [s for r in rounds for s in "ABC" if s in scenarios and not ok(get(r, "jobcast", s))]
        verdict = "**met**" if not (lost or dup or failed) else f"**missed**: {lost:,} lost, {dup:,} duplicated"
        if failed:
            verdict += f" (scenario runs that failed: {', '.join(failed)})"
        rows.append(f"| jobcast: zero lost and zero duplicated events (A, B, C, every round) | "
                    f"{lost:,} lost, {dup:,} duplicated of {delivered:,} delivered | {verdict} |")
    j = (full_b or {}).get("jobcast")
    if j:
        if ok(j):
            bad = j["lost"] or j["duplicated"]
            verdict = "**met**" if not bad else f"**missed**: {j['lost']:,} lost, {j['duplicated']:,} duplicated"
            rows.append(f"| jobcast: zero lost and zero duplicated at the issue's full-size B (1,000 steps, once) | "
                        f"{j['lost']:,} lost, {j['duplicated']:,} duplicated of {j['expected']:,} owed; "
                        f"{j['watchers_without_terminal']} of {j['watchers']} watchers never got the terminal event "
                        f"| {verdict} |")
        else:
            rows.append(f"| jobcast: full-size B (1,000 steps) | {j.get('failed')} | **not measured** |")

    def ratio_row(scenario, key, label, limit, better_high: bool, show):
        if scenario not in scenarios:
            return
        ratios = per_round(scenario, key, lambda j, raw: j / raw)
        if not ratios:
            rows.append(f"| {label} | no complete round | **not measured** |")
            return
        measured = ", ".join(f"round {i}: {show(x)}" for i, x in ratios)
        bad = [x for _, x in ratios if (x < limit if better_high else x > limit)]
        if not bad:
            verdict = "**met**" if len(ratios) > 1 else "**met** (one round)"
        else:
            worst = min(bad) if better_high else max(bad)
            if better_high:
                how = f"{show(worst)} against {show(limit)}: {limit / worst:.1f}× short"
            else:
                how = f"{show(worst)} against ≤ {show(limit)}: {worst / limit:.1f}× over"
            verdict = (f"**missed** in {len(bad)} of {len(ratios)} rounds ({how})")
        rows.append(f"| {label} | {measured} | {verdict} |")

    pct = lambda x: f"{x:.0%}"  # noqa: E731
    times = lambda x: f"{x:.2f}×"  # noqa: E731
    ratio_row("C", "events_per_s", "C: jobcast delivered events/s ≥ 50 % of raw's", 0.5, True, pct)
    ratio_row("A", "p99", "A: jobcast p99 latency ≤ 2× raw's", 2.0, False, times)
    ratio_row("B", "p99", "B: jobcast p99 latency ≤ 2× raw's", 2.0, False, times)
    ratio_row("D", "rss_kb_per_connection", "D: jobcast ws RSS per idle connection ≤ 1.5× raw's", 1.5, False, times)
    if "F" in scenarios:
        fs = [get(r, "jobcast", "F") for r in rounds]
        errors = sum(f.get("errors", 0) for f in fs if ok(f))
        left = [f.get("group_members_left") for f in fs if ok(f)]
        measured = ", ".join(f"round {i}: {f.get('errors', '?')} errors, {f.get('group_members_left', '?')} members left"
                             for i, f in enumerate(fs, 1))
        good = all(ok(f) for f in fs) and errors == 0 and all(x == 0 for x in left)
        verdict = "**met**" if good else "**missed**"
        rows.append(f"| F: jobcast storm: zero errors, nothing left in Redis | {measured} | {verdict} |")
    return ["| target | measured (jobcast against raw in the same round) | verdict |", "| --- | --- | --- |", *rows]


# ---------------------------------------------------------------- profile

CATEGORIES = [
    ("websockets (frames, protocol)", ("websockets/",)),
    ("uvicorn", ("uvicorn/",)),
    ("channels-redis layer", ("channels_redis/",)),
    ("channels (consumer dispatch)", ("channels/",)),
    ("redis-py", ("redis/",)),
    ("msgpack", ("msgpack",)),
    ("Django / ORM / sqlite", ("django/", "sqlite3")),
    ("Celery / kombu / billiard", ("celery/", "kombu/", "billiard/")),
    ("asgiref (sync/async bridges)", ("asgiref/",)),
    ("pydantic", ("pydantic",)),
    ("jobcast code", ("jobcast/", "services/")),
    ("json / orjson", ("json/", "orjson")),
    ("asyncio event loop", ("asyncio/", "uvloop")),
    ("logging", ("logging/",)),
    ("prometheus-client", ("prometheus_client/",)),
]

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(text: str) -> tuple[str, str]:
    match = FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match["func"], match["file"]


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/services/", "lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("services/" + tail) if marker == "/services/" else tail.lstrip("/").split("/", 1)[-1] \
                if marker == "lib/python3" else tail
    return path.rsplit("/", 2)[-1] if "/" in path else path


def _category(path: str) -> str:
    for name, markers in CATEGORIES:
        if any(marker in path for marker in markers):
            return name
    return "other (stdlib, interpreter)"


def summarize_profile(path: Path) -> dict:
    """py-spy raw (collapsed) stacks → samples, self time by function and by library, and
    inclusive time of the stacks' jobcast/channels entry points."""
    self_time: Counter = Counter()
    by_category: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        count = int(count)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_time[f"{func} ({_short(file)})"] += count
        by_category[_category(file)] += count
        seen = set()
        for func, file in frames:
            if ("jobcast/" in file or "services/" in file or "channels" in file) and func not in seen:
                seen.add(func)
                inclusive[f"{func} ({_short(file)})"] += count
    return {"samples": total, "self": self_time.most_common(12), "categories": by_category.most_common(),
            "inclusive": inclusive.most_common(12)}


def tier_shares(x: dict) -> str:
    """Each tier's share of the CPU the system used (load generator excluded)."""
    parts = [x.get(k) or 0.0 for k in ("ws_cpu_s", "pub_cpu_s", "redis_cpu_s", "front_cpu_s")]
    total = sum(parts)
    return " / ".join(f"{p / total:.0%}" for p in parts) if total else "–"


def per_unit(x: dict, cpu_key: str, count: float) -> float | None:
    """Microseconds of a tier's CPU per delivered event (or per published event)."""
    return x[cpu_key] / count * 1e6 if ok(x) and x.get(cpu_key) is not None and count else None


def scale_section(scale: list[dict]) -> list[str]:
    if not scale:
        return ["Not run (`--quick` or `--no-scale`)."]
    lines = ["Scenario C again, on fresh stacks with 1 or 2 ws processes behind nginx and 1 or 2 Celery worker "
             "instances (each of half the main rounds' pool, so 2 instances have the same pool as the rounds). "
             "These 2 cores are shared by every process, so the scaling shown is what two cores "
             "allow; the per-delivery CPU costs are what the estimate below is built from.", "",
             "| ws processes | worker instances (pool processes) | delivered events/s | lost | dup | "
             "ws CPU µs per delivery | worker CPU µs per event | Redis CPU µs per event | nginx+web CPU µs per delivery |",
             "| --- " * 9 + "|"]
    for entry in scale:
        for x in entry["runs"]:
            if not ok(x):
                lines.append(f"| {entry['ws_processes']} | {entry['worker_instances']} ({entry['worker_processes']}) | "
                             f"{notes_for(x)} |" + " – |" * 6)
                continue
            lines.append(
                f"| {entry['ws_processes']} | {entry['worker_instances']} ({entry['worker_processes']}) | "
                f"{fmt(x['events_per_s'], 0)} | {x['lost']} | {x['duplicated']} | "
                f"{fmt(per_unit(x, 'ws_cpu_s', x['delivered']), 1)} | "
                f"{fmt(per_unit(x, 'pub_cpu_s', events_published(x)), 1)} | "
                f"{fmt(per_unit(x, 'redis_cpu_s', events_published(x)), 1)} | "
                f"{fmt(per_unit(x, 'front_cpu_s', x['delivered']), 1)} |")
    return lines


def events_published(x: dict) -> float:
    """Events the jobs published (each reaches every watcher of its job)."""
    return x.get("published") or 0


def ablation_section(ablation: list[dict]) -> list[str]:
    if not ablation:
        return ["Not run (`--quick` or `--no-ablation`)."]
    lines = ["Each optimisation of the event path is a commit. This pass checked the earlier commits out into git "
             "worktrees (`bench/ablation.py`), ran each beside this checkout as its own jobcast stack, and ran B and "
             "C on all of them in turn under the same load generator — so each ratio below is from this one run.", ""]
    base = ablation[0]
    lines += ["| version | commit | scenario | delivered events/s (runs) | p99 ms (runs) | lost | dup | "
              "ws CPU µs per delivery | worker CPU µs per event | events/s vs the first row | notes |",
              "| --- " * 11 + "|"]
    for scenario in ("B", "C"):
        base_rate = med([x["events_per_s"] for x in base["runs"].get(scenario, []) if ok(x)])
        for v in ablation:
            runs = [x for x in v["runs"].get(scenario, []) if ok(x)]
            if not runs:
                lines.append(f"| {v['label']} | `{v['commit']}` | {scenario} | failed | – | – | – | – | – | – | "
                             f"{'; '.join(notes_for(x) for x in v['runs'].get(scenario, []))} |")
                continue
            rate = med([x["events_per_s"] for x in runs])
            ws = med([per_unit(x, "ws_cpu_s", x["delivered"]) for x in runs])
            pub = med([per_unit(x, "pub_cpu_s", events_published(x)) for x in runs])
            lines.append(
                f"| {v['label']} | `{v['commit']}` | {scenario} | {' / '.join(fmt(x['events_per_s'], 0) for x in runs)} | "
                f"{' / '.join(ms(x['p99']) for x in runs)} | {sum(x['lost'] for x in runs)} | "
                f"{sum(x['duplicated'] for x in runs)} | {fmt(ws, 1)} | {fmt(pub, 1)} | "
                f"{fmt(rate / base_rate, 1) + '×' if base_rate else '–'} | {'; '.join(notes_for(x) for x in runs)} |")
    lines += ["", "*lost* counts the seqs a watcher never received by the end of the scenario's time limit, "
              "including every event after a terminal event that never came (*watchers never saw the end*)."]
    return lines


def capacity_section(scale: list[dict]) -> list[str]:
    """Cores, pods and Redis for 100k and 1M watchers, from the per-delivery CPU measured in this run."""
    runs = [x for e in scale if e["ws_processes"] == 1 and e["worker_instances"] == 2 for x in e["runs"] if ok(x)]
    if not runs:
        return ["No scale-out measurement in this run to estimate from."]
    ws_us = med([per_unit(x, "ws_cpu_s", x["delivered"]) for x in runs])
    front_us = med([per_unit(x, "front_cpu_s", x["delivered"]) for x in runs])
    pub_us = med([per_unit(x, "pub_cpu_s", events_published(x)) for x in runs])
    redis_us = med([per_unit(x, "redis_cpu_s", events_published(x)) for x in runs])
    load = 0.7  # cores planned at 70 % busy
    lines = [f"From this run (scenario C, 1 ws process, the 8-process worker pool): a delivery costs "
             f"{fmt(ws_us, 1)} µs of ws CPU and {fmt(front_us, 1)} µs of nginx CPU; a published event "
             f"{fmt(pub_us, 1)} µs of worker CPU (published in batches, as C's tight loop allows; a lone event costs "
             f"a round trip, ~0.1 ms) and {fmt(redis_us, 1)} µs of Redis CPU. The estimate assumes one event per "
             f"watcher per second (each job with one watcher, progress at one update per second; "
             f"`JOBCAST_PROGRESS_MAX_RATE` caps a job at 20/s), cores planned at {load:.0%} busy, and ws pods of 4 "
             "cores holding at most 25,000 sockets each (a fifth of their memory at the idle-socket cost of D). "
             "Publishing is the jobs' own CPU on the worker tier; it is shown separately.", "",
             "| watchers | deliveries/s | ws cores | ws pods | nginx cores | Redis | publishing, worker cores | "
             "all cores |", "| --- " * 8 + "|"]
    for watchers in (100_000, 1_000_000):
        deliveries = events = watchers
        ws_cores = deliveries * ws_us / 1e6 / load
        nginx_cores = deliveries * front_us / 1e6 / load
        redis_cores = events * redis_us / 1e6 / load
        pub_cores = events * max(pub_us, 100.0) / 1e6 / load  # a lone event is a round trip (~100 µs)
        pods = max(-(-watchers // 25_000), -(-int(ws_cores + 0.999) // 4))
        shards = max(1, -(-int(redis_cores + 0.999) // 1))
        lines.append(f"| {watchers:,} | {deliveries:,} | {ws_cores:.0f} | {pods} | {nginx_cores:.0f} | "
                     f"{redis_cores:.1f} cores: {shards} Redis primar{'y' if shards == 1 else 'ies'} (jobs sharded by id) | "
                     f"{pub_cores:.0f} | {ws_cores + nginx_cores + redis_cores + pub_cores:.0f} |")
    total_1m = (ws_us + front_us + redis_us + max(pub_us, 100.0)) / load
    lines += ["", f"Centrifugo publishes 1M connections and ~500k messages/s on 40 CPUs and 5 Redis shards (Go): "
              f"~{40 / 0.5:.0f} cores per 1M deliveries/s. jobcast, from the costs above, needs ~{total_1m:.0f} cores "
              f"per 1M deliveries/s all told ({(ws_us + front_us) / load:.0f} of them in the ws tier and nginx), "
              f"{total_1m / 80:.1f}× Centrifugo's. Note the publisher's share: jobcast's seq, history and snapshot "
              "cost a Lua call per publish that Centrifugo's benchmark does not make. The sharding of Redis by job "
              "id is not implemented (one `REDIS_URL`); past one Redis core it is the first thing to build."]
    return lines


def profile_section(profile: dict) -> list[str]:
    if not profile:
        return ["Not profiled in this run (`--quick`, `--no-profile`, or py-spy not installed: "
                "`pip install py-spy==0.4.3` into the venv)."]
    lines = ["A separate pass after the measured rounds ran B and C once more on a fresh jobcast with "
             "`py-spy record -r 100` attached to the ws process and to the Celery worker tree "
             "(sampling slows the profiled process somewhat; these numbers are not in the tables above).", ""]
    for scenario, data in profile.items():
        result = data["result"]
        lines.append(f"**{scenario}** under the profiler: {fmt(result.get('events_per_s'), 0)} events/s, "
                     f"p99 {ms(result.get('p99'))} ms, lost {result.get('lost')}, ws CPU "
                     f"{fmt(result.get('ws_cpu_s'), 1)} s, worker CPU {fmt(result.get('pub_cpu_s'), 1)} s.")
        lines.append("")
        for tier, summary in data["stacks"].items():
            total = summary["samples"] or 1
            what = "ws process" if tier == "ws" else "Celery worker (all pool processes)"
            lines.append(f"<details><summary>{scenario}, {what}: {summary['samples']:,} samples</summary>")
            lines += ["", "| where the time is spent (leaf frame's library) | share |", "| --- | --- |"]
            lines += [f"| {name} | {count / total:.0%} |" for name, count in summary["categories"][:10]]
            lines += ["", "| hottest functions (self time) | share |", "| --- | --- |"]
            lines += [f"| `{name}` | {count / total:.0%} |" for name, count in summary["self"][:10]]
            lines += ["", "| jobcast / channels frames (inclusive) | share |", "| --- | --- |"]
            lines += [f"| `{name}` | {count / total:.0%} |" for name, count in summary["inclusive"][:10]]
            lines += ["", "</details>", ""]
    return lines


# ---------------------------------------------------------------- the doc

def write(out: Path, meta: dict, rounds: list[dict], profile: dict) -> None:
    sizes, scenarios, m = meta["sizes"], meta["scenarios"], meta["machine"]
    command = "python bench/run.py" + (f" {meta['argv']}" if meta.get("argv") else "")
    lines = [
        "# Benchmarks", "",
        f"jobcast against the stock Channels path and a raw pub/sub server, measured in one run of "
        f"`{command}` on {meta['date']}, which took {meta['seconds'] / 60:.1f} minutes "
        f"({meta['rounds']} round{'s' if meta['rounds'] > 1 else ''}"
        f"{', quick sizes: a smoke run, not a measurement' if meta['mode'] == 'quick' else ''}).", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}; Python {m['python']}; "
        f"{m['redis']}; {m['nginx']}; {m['packages']}. Everything — the three systems, their Redis servers, "
        f"the load generator — shares these {m['cores']} cores, so every number includes the load generator's "
        f"own cost and the contention between processes.", "",
        "Reproduce: `make bench` (which runs `python bench/run.py`; `--quick` is a ~2 minute smoke run, "
        "`--only A,C` a subset, `python -m bench.report` rewrites this page from `bench/results/latest.json`).", "",
        "## Targets", "",
        *target_lines(rounds, scenarios, meta.get("full_b")), "",
        "![delivered events/s and p99 latency per system and scenario](benchmarks.png)", "",
        "## What was compared", "",
        "- **jobcast**, through its front door as a user meets it: `jobcast run` (nginx, gunicorn web tier, one "
        "uvicorn ws process, Celery worker tier, its own redis-server) with `JOBCAST_PROGRESS_MAX_RATE=0` "
        "(no coalescing: every `ctx.progress` call is an event, so these are raw event numbers; the default of "
        "20 per second per job would publish far fewer), `JOBCAST_SUBMIT_RATE_PER_MINUTE=0` and "
        "`JOBCAST_WS_MAX_CONNECTIONS_PER_USER=100000` (all load is one user). Jobs are `demo.count` submitted with "
        "`POST /api/jobs/` and a Bearer token; watchers open `/ws/jobs/{id}/` through nginx and, as the contract "
        "tells clients, resume with `?after=<last seq>` when closed with anything but 1000.",
        "- **stock**, what the Channels tutorial and celery-progress teach (`bench/stock/`): a consumer that joins "
        "group `job_<id>` and forwards each event with `json.dumps`; a Celery task calling "
        "`async_to_sync(channel_layer.group_send)` per event; channels-redis's default `RedisChannelLayer` "
        "(capacity 100, only the read timeout raised, see `bench/stock/settings.py`); a tiny Django view to start "
        "a job; served by uvicorn as the tutorial runs it (its default websockets implementation with per-message "
        "deflate; uvloop and httptools as jobcast has them), no nginx. It has no history and no "
        "resume: an event that does not reach a socket is gone.",
        "- **raw**, the practical ceiling for Python here (`bench/raw.py`): one `websockets` server process, one "
        "`PSUBSCRIBE job:*` connection, `broadcast()` to the job's sockets; events published by a bare asyncio "
        "publisher (one `PUBLISH` per event, pipelined 50 at a time when there is no pause). No seq, no history, no "
        "auth, no database.",
        f"- Each system runs its jobs on {meta['concurrency']} worker processes (Celery `-c "
        f"{meta['concurrency']}` for jobcast and stock, {meta['concurrency']} publisher slots for raw), so the "
        "offered load is the same. Every job publishes the same events: a `running` state, one `progress` per "
        "step, a `succeeded` state, with the same fields (stock and raw mimic jobcast's JSON, within a few bytes).",
        "- Same load generator for all (`bench/loadgen.py`, one separate asyncio process with the `websockets` "
        "client, its open-file limit raised). Watchers connect first; only then are the jobs let go (jobcast and "
        "stock: every worker process is held by a gate job until then — for jobcast a `demo.count` cancelled over "
        "HTTP; raw: the publisher starts), so latency is never history replay. Latency is the receipt time minus "
        "the event's `ts` (set when the worker publishes), over every event of every watcher. Lost = seqs never "
        "received between the first snapshot's seq and the job's last; duplicated = seqs received twice. "
        "Events/s = events delivered to all sockets ÷ (last receipt − first receipt).",
        "- Each round starts the three systems afresh, each with its own redis-server on a free port, then runs "
        f"the scenarios in the order {', '.join(scenarios)}"
        f"{' (D first, so RSS per connection is measured on fresh processes)' if scenarios[:1] == ['D'] else ''}; within a scenario the systems take turns in an order that rotates with the scenario and "
        "reverses in the next round. CPU is measured from `/proc/<pid>/stat` over the delivery window, RSS from "
        "`/proc/<pid>/status` VmRSS. *ws* = the socket-serving process(es), *pub* = the worker/publisher processes, "
        "*front* = jobcast's nginx and gunicorn.",
        "", "Sizes: " + "; ".join(
            f"{s}: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sizes[s].items()) for s in scenarios) + ".",
    ]
    if meta["mode"] == "full" and meta.get("sizes_note"):
        lines += ["", meta["sizes_note"]]

    events = [s for s in "ABC" if s in scenarios]
    if events:
        lines += ["", "## Event delivery (A, B, C)", ""]
        for s in events:
            lines.append(f"- **{s}** — {SCENARIO_TITLES[s]}: " + ", ".join(
                f"{k.replace('_', ' ')} {v:,}" for k, v in sizes[s].items()))
        lines += ["", "Median over the rounds, (min–max) when they differ:", "",
                  "| scenario | system | delivered events/s | p50 ms | p99 ms | lost | duplicated |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for s in events:
            for name in NAMES:
                lines.append(
                    f"| {s} | {name} | {spread(values(rounds, name, s, 'events_per_s'), lambda x: fmt(x, 0))} | "
                    f"{spread(values(rounds, name, s, 'p50'), ms)} | {spread(values(rounds, name, s, 'p99'), ms)} | "
                    f"{sum(x or 0 for x in values(rounds, name, s, 'lost')):,} | "
                    f"{sum(x or 0 for x in values(rounds, name, s, 'duplicated')):,} |")
        lines += ["", "Every round:", "",
                  "| scen. | system | round | published | delivered | lost | dup | events/s | p50 ms | p95 ms | "
                  "p99 ms | max ms | ws CPU s | pub CPU s | redis CPU s | front CPU s | ws RSS MB | wall s | notes |",
                  "| --- " * 19 + "|"]
        for s in events:
            for name in NAMES:
                for i, r in enumerate(rounds, 1):
                    x = get(r, name, s)
                    if not ok(x):
                        lines.append(f"| {s} | {name} | {i} | " + "– | " * 15 + f"{notes_for(x)} |")
                        continue
                    lines.append(
                        f"| {s} | {name} | {i} | {x.get('published', 0) * sizes[s]['watchers']:,} | "
                        f"{x['delivered']:,} | {x['lost']:,} | {x['duplicated']:,} | {fmt(x['events_per_s'], 0)} | "
                        f"{ms(x['p50'])} | {ms(x['p95'])} | {ms(x['p99'])} | {ms(x['max'])} | {fmt(x.get('ws_cpu_s'))} | "
                        f"{fmt(x.get('pub_cpu_s'))} | {fmt(x.get('redis_cpu_s'))} | {fmt(x.get('front_cpu_s'))} | "
                        f"{fmt(x.get('ws_rss_mb'), 0)} | {fmt(x.get('wall_s'), 0)} | {notes_for(x)} |")
        lines += ["", "*published* counts deliveries owed: events published × watchers per job (jobcast: from "
                  "the seq counters in Redis; stock and raw: what their publishers sent)."]
        full_b = meta.get("full_b") or {}
        if full_b:
            size = meta["full_b_size"]
            lines += ["", f"### B at the issue's full size: {size['watchers']} watchers × {size['steps']:,} steps "
                      f"{size['interval_ms']} ms apart, once (after the rounds, fresh systems, jobcast and raw only)", "",
                      "| system | published | delivered | lost | dup | events/s | p50 ms | p99 ms | max ms | ws CPU s | "
                      "wall s | notes |", "| --- " * 12 + "|"]
            for name in ("jobcast", "raw"):
                x = full_b.get(name) or {}
                if not ok(x):
                    lines.append(f"| {name} | " + "– | " * 10 + f"{notes_for(x)} |")
                    continue
                lines.append(f"| {name} | {x['published'] * size['watchers']:,} | {x['delivered']:,} | {x['lost']:,} | "
                             f"{x['duplicated']:,} | {fmt(x['events_per_s'], 0)} | {ms(x['p50'])} | {ms(x['p99'])} | "
                             f"{ms(x['max'])} | {fmt(x.get('ws_cpu_s'))} | {fmt(x.get('wall_s'), 0)} | {notes_for(x)} |")

    if "D" in scenarios:
        lines += ["", f"## D — {sizes['D']['connections']:,} idle connections", "",
                  "Sockets on a job that publishes nothing (jobcast: a queued job, every worker held; the socket "
                  "gets its snapshot and then silence). RSS of the ws server process before and after opening "
                  "them, once CPU settled.", "",
                  "| system | round | open | errors | ws RSS before MB | after MB | KB per connection | "
                  "nginx KB per connection | ws CPU s to accept |", "| --- " * 9 + "|"]
        for name in NAMES:
            for i, r in enumerate(rounds, 1):
                x = get(r, name, "D")
                if not ok(x):
                    lines.append(f"| {name} | {i} | " + "– | " * 7 + f"{notes_for(x)} |")
                    continue
                lines.append(f"| {name} | {i} | {x['open']:,} | {x['errors']} | {fmt(x['rss_before_mb'], 0)} | "
                             f"{fmt(x['rss_after_mb'], 0)} | {fmt(x['rss_kb_per_connection'], 1)} | "
                             f"{fmt(x.get('front_rss_kb_per_connection'), 1)} | {fmt(x.get('ws_cpu_s'), 2)} |")

    if "E" in scenarios:
        e = sizes["E"]
        lines += ["", f"## E — tiny jobs end to end ({e['jobs']:,} jobs, {e['clients']} concurrent clients)", "",
                  "Each client, one job at a time: submit a 1-step job, watch it, wait for the terminal `state` "
                  "event. jobcast: `POST /api/jobs/` then `/ws/jobs/{id}/` (its API gives the id at submit; a late "
                  "socket still gets the end from the snapshot). stock and raw keep no history, so their clients "
                  "choose the id, open the socket first and then start the job (stock: its view; raw: `GET "
                  "/start/<id>` on the raw server, a Redis list, a bare worker) — submitted first, a tiny job "
                  "would finish before they watch.", "",
                  "| system | round | done | errors | jobs/s | p50 ms | p99 ms | ws CPU s | pub CPU s | front CPU s | "
                  "share of the systems' CPU: ws / workers / Redis / front |",
                  "| --- " * 11 + "|"]
        for name in NAMES:
            for i, r in enumerate(rounds, 1):
                x = get(r, name, "E")
                if not ok(x):
                    lines.append(f"| {name} | {i} | " + "– | " * 9 + f"{notes_for(x)} |")
                    continue
                kinds = ", ".join(f"{k}×{v}" for k, v in x["error_kinds"].items())
                lines.append(f"| {name} | {i} | {x['done']:,} | {x['errors']}{' ' + kinds if kinds else ''} | "
                             f"{fmt(x['jobs_per_s'], 1)} | {ms(x['p50'])} | {ms(x['p99'])} | {fmt(x.get('ws_cpu_s'))} | "
                             f"{fmt(x.get('pub_cpu_s'))} | {fmt(x.get('front_cpu_s'))} | {tier_shares(x)} |")

    if "F" in scenarios:
        lines += ["", f"## F — storm of {sizes['F']['connections']:,} handshakes, then all closed at once", "",
                  "All handshakes started together on one job's stream, held 2 s (a socket the server closed in "
                  "that time counts as an error), then all closed together; afterwards the group membership kept in "
                  "Redis is counted until it is back to what it was before (at most 10 s): members of the core "
                  "layer's `asgi:group:*` sorted sets (stock) and subscribed `asgi__group__*` pub/sub channels "
                  "(jobcast keeps members in the process, one subscription per group). raw keeps its "
                  "subscriptions in memory (–).", "",
                  "| system | round | handshakes | errors | s until all live | handshake p50 s | s to close all | "
                  "group members before | left after | s until clean |", "| --- " * 10 + "|"]
        for name in NAMES:
            for i, r in enumerate(rounds, 1):
                x = get(r, name, "F")
                if not ok(x):
                    lines.append(f"| {name} | {i} | " + "– | " * 8 + f"{notes_for(x)} |")
                    continue
                kinds = ", ".join(f"{k}×{v}" for k, v in x["error_kinds"].items())
                clean = fmt(x.get("seconds_until_groups_clean"), 1) if x.get("group_members_before") is not None else "–"
                lines.append(f"| {name} | {i} | {x['handshakes']:,} | {x['errors']}{' ' + kinds if kinds else ''} | "
                             f"{fmt(x['seconds_until_all_live'], 2)} | {fmt(x['handshake_p50_s'], 2)} | "
                             f"{fmt(x['seconds_to_close_all'], 2)} | {x['group_members_before'] if x['group_members_before'] is not None else '–'} | "
                             f"{x['group_members_left'] if x['group_members_left'] is not None else '–'} | {clean} |")

    broker = meta.get("broker") or {}
    if broker:
        lines += ["", "## The broker's ceiling", "",
                  "`redis-benchmark -c 50 -n 200000 publish job:bench <payload>` with a payload the size of a jobcast "
                  "progress frame, no subscriber, on its own redis-server (this redis-benchmark, from Redis 7.0, has "
                  "no `-t publish` test, so the command is given explicitly):", "",
                  f"- one command per round trip: {fmt(broker.get('publish'), 0)} PUBLISH/s",
                  f"- pipelined 16 deep (`-P 16`): {fmt(broker.get('publish_pipelined_16'), 0)} PUBLISH/s"]

    lines += ["", "## Scale-out: 1 and 2 ws processes and workers (C)", "", *scale_section(meta.get("scale") or [])]
    lines += ["", "## What it would take for 100k and 1M watchers", "", *capacity_section(meta.get("scale") or [])]
    lines += ["", "## What each change did (before/after, same run)", "", *ablation_section(meta.get("ablation") or [])]
    lines += ["", "## What the profile shows", "", *profile_section(profile)]
    if NOTES.exists():
        lines += ["", notes_for_docs()]
    (out / "benchmarks.md").write_text("\n".join(lines) + "\n")
    plot(out / "benchmarks.png", rounds, scenarios)


# ---------------------------------------------------------------- the plot

def plot(path: Path, rounds: list[dict], scenarios: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"jobcast": "#2a7ab0", "stock": "#d9822b", "raw": "#7a7a7a"}
    panels = [("delivered events/s", [s for s in "ABC" if s in scenarios], "events_per_s", 1, False),
              ("p99 latency, ms (log)", [s for s in "ABC" if s in scenarios], "p99", 1e3, True),
              ("RSS per idle connection, KB", ["D"] if "D" in scenarios else [], "rss_kb_per_connection", 1, False),
              ("jobs/s end to end", ["E"] if "E" in scenarios else [], "jobs_per_s", 1, False)]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1, 4),
                             gridspec_kw={"width_ratios": [max(1, len(p[1])) for p in panels]})
    axes = axes if len(panels) > 1 else [axes]
    width = 0.27
    for axis, (title, scens, key, scale, log) in zip(axes, panels):
        for i, name in enumerate(NAMES):
            xs, heights, lows, highs = [], [], [], []
            for j, s in enumerate(scens):
                vals = [v * scale for v in values(rounds, name, s, key) if v is not None]
                if not vals:
                    continue
                mid = statistics.median(vals)
                xs.append(j + (i - 1) * width)
                heights.append(mid)
                lows.append(mid - min(vals))
                highs.append(max(vals) - mid)
            axis.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=name, color=colors[name])
        axis.set_xticks(range(len(scens)), scens)
        axis.set_title(title, fontsize=10)
        if log:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("jobcast vs stock Channels vs raw pub/sub (median of rounds; bars: min–max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    data = json.loads((REPO / "bench" / "results" / "latest.json").read_text())
    write(REPO / "docs", data["meta"], data["rounds"], data["profile"])
    print("wrote docs/benchmarks.md and docs/benchmarks.png")
