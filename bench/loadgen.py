"""The load generator, a separate process: `python -m bench.loadgen < spec.json > result.json`.

Modes:
- events: connect every watcher, collect messages until each has its job's last seq (or the
  server closes), report delivered/lost/duplicated and publish→receive latency (from `ts`);
- idle:   open N sockets, print READY, hold them `hold` seconds, close them;
- storm:  N handshakes at once, then close all at once; report errors and time until all live.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import websockets


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def watch(url: str, headers: dict, last_seq: int, deadline: float, out: dict) -> None:
    seqs, latencies, first, last = [], [], None, None
    try:
        async with websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=60) as ws:
            out["connected"] += 1
            while time.time() < deadline:
                raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time()))
                now = time.time()
                message = json.loads(raw)
                if "seq" not in message:
                    continue
                seqs.append(message["seq"])
                if message.get("type") == "progress":
                    latencies.append(now - message["ts"])
                    first = first or now
                    last = now
                if message["seq"] >= last_seq:
                    break
    except (websockets.ConnectionClosed, asyncio.TimeoutError):
        pass
    except Exception as exc:  # noqa: BLE001 - counted, not raised: a benchmark reports errors
        out["errors"].append(type(exc).__name__)
    out["seqs"].append(seqs)
    out["latencies"].extend(latencies)
    if first:
        out["first"] = min(out["first"] or first, first)
        out["last"] = max(out["last"] or last, last)


def summarize_events(out: dict, expected_per_watcher: int) -> dict:
    lost = duplicated = delivered = 0
    for seqs in out["seqs"]:
        unique = set(seqs)
        duplicated += len(seqs) - len(unique)
        delivered += len(seqs)
        lost += max(0, expected_per_watcher - len(unique))
    lat = sorted(out["latencies"])

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    span = (out["last"] - out["first"]) if out["first"] and out["last"] and out["last"] > out["first"] else None
    return {
        "watchers": len(out["seqs"]), "connected": out["connected"], "errors": len(out["errors"]),
        "delivered": delivered, "lost": lost, "duplicated": duplicated,
        "progress_received": len(lat), "events_per_s": (len(lat) / span) if span else None,
        "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
    }


async def run_events(spec: dict) -> dict:
    out = {"connected": 0, "errors": [], "seqs": [], "latencies": [], "first": None, "last": None}
    deadline = time.time() + spec["timeout"]
    await asyncio.gather(*(watch(url, spec["headers"], spec["last_seq"], deadline, out) for url in spec["urls"]))
    return summarize_events(out, spec["expected_per_watcher"])


async def run_idle(spec: dict) -> dict:
    sockets, errors = [], 0
    semaphore = asyncio.Semaphore(100)

    async def open_one(url):
        nonlocal errors
        async with semaphore:
            try:
                sockets.append(await websockets.connect(url, additional_headers=spec["headers"], open_timeout=60))
            except Exception:  # noqa: BLE001
                errors += 1

    await asyncio.gather(*(open_one(url) for url in spec["urls"]))
    print(f"READY {len(sockets)}", file=sys.stderr, flush=True)
    await asyncio.sleep(spec["hold"])
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"open": len(sockets), "errors": errors}


async def run_storm(spec: dict) -> dict:
    started = time.time()
    results = await asyncio.gather(
        *(websockets.connect(url, additional_headers=spec["headers"], open_timeout=120) for url in spec["urls"]),
        return_exceptions=True,
    )
    live = [ws for ws in results if not isinstance(ws, BaseException)]
    all_live_after = time.time() - started
    errors = [type(r).__name__ for r in results if isinstance(r, BaseException)]
    await asyncio.sleep(1)
    await asyncio.gather(*(ws.close() for ws in live), return_exceptions=True)
    return {"handshakes": len(results), "errors": len(errors), "error_kinds": sorted(set(errors)),
            "seconds_until_all_live": all_live_after}


def main() -> None:
    raise_fd_limit()
    spec = json.load(sys.stdin)
    run = {"events": run_events, "idle": run_idle, "storm": run_storm}[spec["mode"]]
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
