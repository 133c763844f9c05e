"""The load generator, a separate process: `python -m bench.loadgen < spec.json`, result on stdout.

One asyncio process, many sockets (it raises its own open-file limit). Modes:

- watch: connect every watcher (at most `connect_concurrency` handshakes at a time), print
  `READY n` on stderr, then read until each watcher has its job's terminal `state` event,
  the server closes with 1000, the deadline, or nothing arrived on any socket for `quiet` s. With `resume` (jobcast) a socket closed
  otherwise (1012, 4408, a dropped connection) is reopened with `?after=<last seq>`, as the
  contract tells clients to. Reports delivered, lost (seqs never received between the first
  snapshot's seq and the job's last), duplicated, publish→receive latency from each event's
  `ts`, and delivered events/s (first to last receipt);
- idle:  open N sockets, print `READY n`, hold them until a `CLOSE` line on stdin (or `hold` s);
- storm: N handshakes at once, hold `hold` s, then close all at once; errors and timings;
- e2e:   `jobs` tiny jobs through `clients` concurrent clients, each: submit, watch, wait for the
  terminal event (jobcast: submit then watch, as its API gives the id at submit; stock and raw
  keep no history, so their clients pick the id and watch first, else they miss tiny jobs).

Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from collections import Counter

import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TERMINAL = {"succeeded", "failed", "cancelled"}
MAX_RECONNECTS = 20


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
    return type(exc).__name__


def percentiles(values: list[float]) -> dict:
    values = sorted(values)

    def pct(p):
        return values[min(len(values) - 1, int(p * len(values)))] if values else None

    return {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": values[-1] if values else None}


def with_after(url: str, after: int) -> str:
    base = url.split("?")[0]
    return f"{base}?after={after}"


def record_frame(w, message: dict) -> bool:
    """Note one server message's seq on a watcher (`base`, `last`, `seqs`, `resets`); True for an event.

    A snapshot sets the base (or, later, counts a reset: history did not reach back to `after`);
    an event's seq is appended; anything without a seq (an `error` frame) is ignored.
    """
    if message.get("type") == "snapshot":
        seq = message["job"]["seq"]
        if w.base is None:
            w.base = seq
        elif message.get("reset"):
            w.resets += 1
        w.last = max(w.last, seq)
        return False
    if "seq" not in message:
        return False
    if w.base is None:
        w.base = 0
    w.seqs.append(message["seq"])
    w.last = max(w.last, message["seq"])
    return True


def terminal_of(message: dict) -> tuple[str, int] | None:
    """(state, seq) when the message shows the job's end (a terminal snapshot or state event), else None."""
    kind = message.get("type")
    if kind == "snapshot" and message["job"]["state"] in TERMINAL:
        return message["job"]["state"], message["job"]["seq"]
    if kind == "state" and message.get("state") in TERMINAL:
        return message["state"], message["seq"]
    return None


class Watcher:
    def __init__(self, url: str, final: int):
        self.url, self.final = url, final
        self.ws = None
        self.connected = False
        self.base = None  # the first snapshot's seq (0 without a snapshot)
        self.last = 0
        self.seqs: list[int] = []
        self.done = False
        self.reconnects = 0
        self.resets = 0
        self.closes: Counter = Counter()


async def run_watch(spec: dict) -> dict:
    headers, resume = spec.get("headers", {}), spec.get("resume", False)
    watchers = [Watcher(t["url"], t["final"]) for t in spec["targets"]]
    latencies: list[float] = []
    samples: list[tuple[float, float]] = []  # (receipt, latency), for the timeline
    frame_bytes: list[int] = []
    connect_errors: Counter = Counter()
    first = last = None
    semaphore = asyncio.Semaphore(spec.get("connect_concurrency", 50))
    deadline = time.time() + spec["timeout"]

    async def open_socket(w: Watcher, url: str) -> None:
        async with semaphore:
            try:
                w.ws = await connect(url, additional_headers=headers, max_size=None, open_timeout=60,
                                     ping_interval=None, max_queue=None)
                w.connected = True
            except Exception as exc:  # noqa: BLE001 - a benchmark counts errors
                connect_errors[describe(exc)] += 1
                w.ws = None

    await asyncio.gather(*(open_socket(w, w.url) for w in watchers))
    print(f"READY {sum(w.ws is not None for w in watchers)}", file=sys.stderr, flush=True)

    async def consume(w: Watcher) -> None:
        try:
            await read(w)
        except asyncio.CancelledError:
            pass
        finally:
            if w.ws is not None:
                try:
                    await asyncio.wait_for(w.ws.close(), 5)
                except BaseException:  # noqa: BLE001 - closing is best effort
                    pass

    async def read(w: Watcher) -> None:
        nonlocal first, last
        while w.ws is not None and not w.done:
            remaining = deadline - time.time()
            if remaining <= 0:
                break
            try:
                raw = await asyncio.wait_for(w.ws.recv(), remaining)
            except (ConnectionClosed, OSError) as exc:
                code = exc.rcvd.code if isinstance(exc, ConnectionClosed) and exc.rcvd else None
                w.closes[str(code)] += 1
                if code == 1000 or not resume or w.reconnects >= MAX_RECONNECTS:
                    break
                w.reconnects += 1
                await asyncio.sleep(0.1 * min(w.reconnects, 10))
                await open_socket(w, with_after(w.url, w.last))
                continue
            except TimeoutError:
                break
            now = time.time()
            message = json.loads(raw)
            if terminal_of(message):
                w.done = True
            if not record_frame(w, message):
                continue
            latencies.append(now - message["ts"])
            samples.append((now, now - message["ts"]))
            if message["type"] == "progress":
                frame_bytes.append(len(raw))
            first = now if first is None else min(first, now)
            last = now if last is None else max(last, now)

    tasks = [asyncio.create_task(consume(w)) for w in watchers]
    quiet = spec.get("quiet", 5)
    while not all(task.done() for task in tasks):
        await asyncio.sleep(0.25)
        now = time.time()
        # Stop at the deadline, or once nothing arrived for `quiet` s (a system that lost a
        # job's terminal event would otherwise keep its watchers waiting until the deadline).
        if now > deadline or (last is not None and now - last > quiet):
            for task in tasks:
                task.cancel()
            break
    await asyncio.gather(*tasks, return_exceptions=True)
    delivered = lost = duplicated = expected = out_of_order = 0
    closes: Counter = Counter()
    for w in watchers:
        if not w.connected:
            continue  # counted under connect_errors, not as lost events
        base = w.base or 0
        unique = set(w.seqs)
        delivered += len(w.seqs)
        duplicated += len(w.seqs) - len(unique)
        expected += max(0, w.final - base)
        lost += sum(1 for seq in range(base + 1, w.final + 1) if seq not in unique)
        out_of_order += sum(1 for a, b in zip(w.seqs, w.seqs[1:]) if b < a)
        closes.update(w.closes)
    span = (last - first) if first is not None and last > first else None
    return {
        "watchers": len(watchers), "connected": len(watchers) - sum(connect_errors.values()),
        "connect_errors": dict(connect_errors), "expected": expected, "delivered": delivered, "lost": lost,
        "duplicated": duplicated, "out_of_order": out_of_order,
        "watchers_without_terminal": sum(not w.done for w in watchers),
        "reconnects": sum(w.reconnects for w in watchers), "resets": sum(w.resets for w in watchers),
        "close_codes": dict(closes), "events_per_s": delivered / span if span else None, "span_s": span,
        "frame_bytes": sum(frame_bytes) / len(frame_bytes) if frame_bytes else None,
        **percentiles(latencies), "loadgen_cpu_s": cpu_seconds(), "timeline": timeline(samples, first),
    }


def timeline(samples, first, buckets: int = 20) -> list:
    """[seconds since the first receipt, events, median latency] in `buckets` slices (for diagnosis)."""
    if not samples or first is None:
        return []
    end = max(t for t, _ in samples)
    width = max((end - first) / buckets, 1e-3)
    slices: dict[int, list[float]] = {}
    for t, latency in samples:
        slices.setdefault(min(buckets - 1, int((t - first) / width)), []).append(latency)
    return [[round(i * width, 3), len(v), round(sorted(v)[len(v) // 2], 4)] for i, v in sorted(slices.items())]


async def run_idle(spec: dict) -> dict:
    sockets, errors = [], Counter()
    semaphore = asyncio.Semaphore(spec.get("connect_concurrency", 50))

    async def open_one(url):
        async with semaphore:
            try:
                sockets.append(await connect(url, additional_headers=spec.get("headers", {}), open_timeout=60,
                                             ping_interval=None))
            except Exception as exc:  # noqa: BLE001
                errors[describe(exc)] += 1

    await asyncio.gather(*(open_one(url) for url in spec["urls"]))
    print(f"READY {len(sockets)}", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), spec.get("hold", 60))
    except TimeoutError:
        pass
    closed_by_server = sum(ws.close_code is not None for ws in sockets)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"open": len(sockets), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "closed_by_server": closed_by_server, "loadgen_cpu_s": cpu_seconds()}


async def run_storm(spec: dict) -> dict:
    started = time.perf_counter()

    async def one(url):
        try:
            ws = await connect(url, additional_headers=spec.get("headers", {}), open_timeout=120, ping_interval=None)
            return ws, time.perf_counter() - started, None
        except Exception as exc:  # noqa: BLE001
            return None, time.perf_counter() - started, describe(exc)

    results = await asyncio.gather(*(one(url) for url in spec["urls"]))
    live = [ws for ws, _, _ in results if ws is not None]
    errors = Counter(error for _, _, error in results if error)
    live_times = [t for ws, t, _ in results if ws is not None]
    all_done = time.perf_counter() - started
    await asyncio.sleep(spec.get("hold", 2))
    closed = Counter(f"closed {ws.close_code}" for ws in live if ws.close_code is not None)
    errors.update(closed)
    close_started = time.perf_counter()
    await asyncio.gather(*(ws.close() for ws in live), return_exceptions=True)
    return {
        "handshakes": len(results), "live": len(live) - sum(closed.values()), "errors": sum(errors.values()),
        "error_kinds": dict(errors), "seconds_until_all_live": max(live_times) if live_times else None,
        "seconds_until_all_answered": all_done, "handshake_p50_s": percentiles(live_times)["p50"],
        "seconds_to_close_all": time.perf_counter() - close_started, "loadgen_cpu_s": cpu_seconds(),
    }


async def run_e2e(spec: dict) -> dict:
    import httpx

    system, headers = spec["system"], spec.get("headers", {})
    todo = list(range(spec["jobs"]))
    latencies: list[float] = []
    errors: Counter = Counter()
    deadline = time.time() + spec["timeout"]

    async def wait_terminal(ws) -> bool:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), spec.get("job_timeout", 30)))
            state = message["job"]["state"] if message.get("type") == "snapshot" else message.get("state")
            if state in TERMINAL:
                return True

    async def one_job(http) -> None:
        started = time.perf_counter()
        ws = None
        try:
            if system == "jobcast":
                response = await http.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": spec["steps"]}})
                if response.status_code != 201:
                    errors[f"HTTP {response.status_code}"] += 1
                    return
                job_id = response.json()["id"]
                ws = await connect(f"{spec['ws_base']}/ws/jobs/{job_id}/", additional_headers=headers, open_timeout=30)
            else:
                job_id = str(uuid.uuid4())
                ws = await connect(f"{spec['ws_base']}/ws/jobs/{job_id}/", open_timeout=30)
                if system == "stock":
                    response = await http.post("/api/jobs/", json={"id": job_id, "steps": spec["steps"]})
                else:
                    response = await http.get(f"/start/{job_id}?steps={spec['steps']}")
                if response.status_code not in (200, 201):
                    errors[f"HTTP {response.status_code}"] += 1
                    return
            await wait_terminal(ws)
            latencies.append(time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001
            errors[describe(exc)] += 1
        finally:
            if ws is not None:
                try:
                    await asyncio.wait_for(ws.close(), 5)
                except Exception:  # noqa: BLE001
                    pass

    async def client() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=spec["http_base"], headers=headers, timeout=30, limits=limits) as http:
            while todo and time.time() < deadline:
                todo.pop()
                await one_job(http)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(spec["clients"])))
    seconds = time.perf_counter() - started
    return {"jobs": spec["jobs"], "done": len(latencies), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "seconds": seconds, "jobs_per_s": len(latencies) / seconds if seconds else None,
            **percentiles(latencies), "loadgen_cpu_s": cpu_seconds()}


def main() -> None:
    raise_fd_limit()
    spec = json.loads(sys.stdin.readline())
    run = {"watch": run_watch, "idle": run_idle, "storm": run_storm, "e2e": run_e2e}[spec["mode"]]
    try:
        import uvloop  # the same event loop as the servers: the generator's own cost per message is lower

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    assert websockets.version.version >= "14", "needs websockets' asyncio client (>= 14)"
    main()
