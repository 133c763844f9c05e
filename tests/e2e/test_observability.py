"""Observability against the real thing: `jobcast run` (nginx, gunicorn, uvicorn, celery, Redis) and a
real Prometheus server scraping its three tiers every second, with the project's alert rules loaded.

After a few jobs with watchers (Bearer, ticket and session-cookie sockets), refused handshakes and
a failing job, the tests check that
- the numbers Prometheus scraped are exactly what happened (jobs, events, frames, sockets, refusals);
- every query of every dashboard panel returns data through Prometheus's HTTP API;
- each tier's /metrics passes `promtool check metrics`;
- the alert rules load and evaluate in Prometheus, and none fires on this healthy stack;
- the logs are JSON lines with tier, request id and job id, and no credential appears in them.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
import yaml

from jobcast.cli.stack import free_port
from tests.e2e.conftest import LiveStack, start_stack
from tests.helm.test_tools import ALERTS, DASHBOARD, dashboard_queries, tool
from tests.support import stop_process, wait_until

pytestmark = [pytest.mark.e2e]

JOBS = 4  # the last one fails on purpose
STEPS = 15


@dataclass
class Observed:
    stack: LiveStack
    worker_port: int
    prometheus: str  # base URL
    secret_key: str
    token: str = ""
    ticket: str = ""
    session: str = ""
    jobs: list[dict] = field(default_factory=list)
    frames: int = 0  # frames every client received, in all
    last_seqs: dict = field(default_factory=dict)


def query(base: str, expr: str) -> list[dict]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def scalar(base: str, expr: str) -> float | None:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else None


def start_prometheus(workdir: Path, targets: dict[str, int]) -> tuple[str, subprocess.Popen]:
    """Debian's prometheus server on a free port, its data in `workdir`, scraping `targets` every second."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
                           for job, target in targets.items()],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(workdir / "prometheus.log", "wb")
    process = subprocess.Popen(
        [tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"

    def ready():
        assert process.poll() is None, (workdir / "prometheus.log").read_text()
        try:
            return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 30, "prometheus to be ready", interval=0.2)
    except BaseException:
        stop_process(process)
        raise
    return base, process


async def watch(url: str, headers: dict | None = None) -> list[dict]:
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        return [orjson.loads(raw) async for raw in ws]


async def refused(url: str, headers: dict) -> int:
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.wait_closed()
        return ws.close_code


async def traffic(observed: Observed) -> None:
    stack = observed.stack
    bearer = {"Authorization": f"Bearer {observed.token}"}
    browser = stack.browser("obs")
    observed.session = browser.cookies["sessionid"]
    cookie = {"Cookie": f"sessionid={observed.session}", "Origin": stack.url}

    async with websockets.connect(f"{stack.ws_url}/ws/jobs/", additional_headers=cookie) as all_jobs:
        with httpx.Client(base_url=stack.url, headers=bearer, timeout=30) as client:
            for n in range(JOBS):
                params = {"steps": STEPS, "interval_ms": 40}
                if n == JOBS - 1:
                    params["fail_at"] = 5
                response = client.post("/api/jobs/", json={"kind": "demo.count", "params": params},
                                       headers={"X-Request-ID": f"obs-submit-{n}"})
                assert response.status_code == 201 and response.headers["x-request-id"] == f"obs-submit-{n}"
                observed.jobs.append(response.json())
                if n == 0:
                    # Let Prometheus see the submit route's series once before the others come: a
                    # series that first appears already at N has no increase for rate() to show.
                    await asyncio.sleep(2.5)
            observed.ticket = client.post("/api/ws-tickets/").json()["ticket"]
        watchers = [watch(f"{stack.ws_url}/ws/jobs/{job['id']}/?after=0", bearer) for job in observed.jobs]
        watchers.append(watch(f"{stack.ws_url}/ws/jobs/{observed.jobs[0]['id']}/?after=0&ticket={observed.ticket}"))
        results = await asyncio.wait_for(asyncio.gather(*watchers), 60)
        for job, messages in zip(observed.jobs, results):
            seqs = [m["seq"] for m in messages]
            assert seqs == list(range(1, len(seqs) + 1)) and messages[-1]["type"] == "state"
            observed.last_seqs[job["id"]] = seqs[-1]
        assert [m["seq"] for m in results[-1]] == [m["seq"] for m in results[0]]  # the ticket's socket
        observed.frames += sum(len(messages) for messages in results)
        # The all-jobs stream: every job's snapshot and events, until every job has ended.
        ended = set()
        while len(ended) < JOBS:
            message = orjson.loads(await asyncio.wait_for(all_jobs.recv(), 30))
            observed.frames += 1
            if message["type"] == "state" and message["state"] in ("succeeded", "failed"):
                ended.add(message["job_id"])
    assert await refused(f"{stack.ws_url}/ws/jobs/{observed.jobs[0]['id']}/", {"Authorization": "Bearer jc_not-a-token"}) == 4401
    assert await refused(f"{stack.ws_url}/ws/jobs/{uuid.uuid4()}/", bearer) == 4404
    # A token pasted into a URL, sent to the web tier directly: Django logs the 404's path.
    assert httpx.get(f"http://127.0.0.1:{stack.web_port}/api/jobs/{observed.token}/", headers=bearer).status_code == 404
    browser.get("/api/jobs/")
    browser.close()


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    data = tmp_path_factory.mktemp("observed")
    worker_port, secret_key = free_port(), secrets.token_urlsafe(50)
    stack, stop = start_stack(data, JOBCAST_FRONT_DOOR="nginx", JOBCAST_WORKER_METRICS_PORT=str(worker_port),
                              JOBCAST_LOG_FORMAT="json", SECRET_KEY=secret_key)
    prometheus = None
    try:
        base, prometheus = start_prometheus(data / "prometheus", {
            "jobcast-web": stack.web_port, "jobcast-ws": stack.ws_port, "jobcast-worker": worker_port})
        wait_until(lambda: scalar(base, 'count(up{job=~"jobcast-.*"} == 1)') == 3, 30, "every tier to be scraped")
        result = Observed(stack, worker_port, base, secret_key, token=stack.token("obs"))
        asyncio.run(traffic(result))
        # Prometheus has scraped the end of it.
        wait_until(lambda: scalar(base, "sum(jobcast_jobs_finished_total)") == JOBS
                   and scalar(base, "sum(jobcast_ws_connections_closed_total)") == JOBS + 3, 30,
                   "the last jobs and sockets to be scraped")
        time.sleep(2)
        yield result
    finally:
        if prometheus is not None:
            stop_process(prometheus, signal.SIGTERM)
        stop()


def test_the_numbers_prometheus_scraped_are_what_happened(observed):
    base = observed.prometheus

    def value(expr):
        return scalar(base, expr)

    assert value('sum(jobcast_jobs_submitted_total{kind="demo.count"})') == JOBS
    assert value('sum(jobcast_jobs_started_total{kind="demo.count"})') == JOBS
    assert value('sum(jobcast_jobs_finished_total{state="succeeded"})') == JOBS - 1
    assert value('sum(jobcast_jobs_finished_total{state="failed"})') == 1
    assert value("sum(jobcast_jobs_running)") == 0
    assert value('sum(jobcast_job_duration_seconds_count{state="succeeded"})') == JOBS - 1
    assert value('sum(jobcast_job_queue_wait_seconds_count{kind="demo.count"})') == JOBS
    assert value("sum(jobcast_events_published_total)") == sum(observed.last_seqs.values())
    assert value('sum(jobcast_events_published_total{type="state"})') == 2 * JOBS  # running, then the end
    assert value("sum(jobcast_ws_messages_sent_total)") == observed.frames
    # Sockets: a watcher per job, the ticket's, the all-jobs stream, and the one refused with 4404
    # after it was admitted; all closed again (the all-jobs one by the client).
    assert value("sum(jobcast_ws_connections_opened_total)") == JOBS + 3
    assert value('sum(jobcast_ws_connections_closed_total{code="1000"})') == JOBS + 2
    assert value('sum(jobcast_ws_connections_closed_total{code="4404"})') == 1
    assert value("sum(jobcast_ws_connections)") == 0
    assert value('sum(jobcast_ws_handshakes_refused_total{code="4401", reason="not_authenticated"})') == 1
    assert value('sum(jobcast_ws_handshakes_refused_total{code="4404", reason="not_found"})') == 1
    assert value("sum(jobcast_ws_handshakes_refused_total)") == 2
    assert value("sum(jobcast_ws_groups)") == 0
    assert 0 < value("sum(jobcast_event_latency_seconds_count)") <= observed.frames
    assert value("sum(jobcast_event_latency_skewed_total)") == 0  # one host, one clock
    assert value('sum(jobcast_http_requests_total{route="/api/jobs/", method="POST", status="201"})') == JOBS
    assert value('sum(jobcast_http_requests_total{route="/api/jobs/<job_id>/", method="GET", status="404"})') == 1
    assert value('jobcast_queue_depth{queue="jobcast"}') == 0
    assert value('jobcast_queue_oldest_job_age_seconds{queue="jobcast"}') == 0
    assert value("jobcast_worker_consumer_up") == 1
    assert value("jobcast_worker_pool_processes") == 2  # JOBCAST_WORKER_CONCURRENCY of the stack
    assert value("jobcast_worker_pool_processes_busy") == 0


def test_every_dashboard_panel_shows_data_after_traffic(observed):
    """Every query of every panel returns series through Prometheus's API, and every panel has at
    least one number to draw (Grafana would otherwise show "No data")."""
    dashboard = json.loads(DASHBOARD.read_text())
    empty, blank_panels = [], []
    finite_by_panel: dict[int, bool] = {}
    for panel, target, expr in dashboard_queries(dashboard):
        result = query(observed.prometheus, expr)
        if not result:
            empty.append(f"panel {panel['id']} ({panel['title']}) {target['refId']}: {expr}")
        finite = any(math.isfinite(float(series["value"][1])) for series in result)
        finite_by_panel[panel["id"]] = finite_by_panel.get(panel["id"], False) or finite
    blank_panels = [pid for pid, finite in finite_by_panel.items() if not finite]
    assert empty == [] and blank_panels == [], "\n".join(empty) + f"\nno number in panels {blank_panels}"
    assert len(finite_by_panel) == len([p for p in dashboard["panels"] if p["type"] != "row"])


def test_each_tiers_metrics_pass_promtool_check_metrics(observed):
    stack = observed.stack
    for tier, port in (("web", stack.web_port), ("ws", stack.ws_port), ("worker", observed.worker_port)):
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        done = subprocess.run([tool("promtool"), "check", "metrics"], input=page.content, capture_output=True)
        assert done.returncode == 0, (tier, done.stdout.decode() + done.stderr.decode())
        assert b"jobcast_" in page.content and b"_created" not in page.content, tier
    # ...and promtool does refuse what breaks the conventions (a gauge named like a counter).
    bad = b"# HELP jobcast_bad_total x\n# TYPE jobcast_bad_total gauge\njobcast_bad_total 1\n"
    assert subprocess.run([tool("promtool"), "check", "metrics"], input=bad, capture_output=True).returncode != 0
    # nginx never serves /metrics to the public.
    assert httpx.get(f"{stack.url}/metrics", timeout=10).status_code == 404


def test_the_alert_rules_load_and_none_fires_on_a_healthy_stack(observed):
    """Prometheus loads every rule and evaluates it without error, and no alert's condition holds on this
    healthy stack (each expression, queried now, returns nothing: not even pending)."""
    rules = httpx.get(f"{observed.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in rules for rule in group["rules"]}
    expected = {rule["alert"]: rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    assert set(loaded) == set(expected)
    assert all(rule["health"] == "ok" for rule in loaded.values()), {n: r.get("lastError") for n, r in loaded.items()}
    holding = {name: query(observed.prometheus, rule["expr"]) for name, rule in expected.items()}
    assert {name: result for name, result in holding.items() if result} == {}
    firing = [a for a in httpx.get(f"{observed.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
              if a["state"] == "firing"]
    assert firing == []


def test_logs_are_json_lines_with_context_and_no_credentials(observed):
    stack = observed.stack
    text = stack.log.read_text()
    lines, other = [], []
    for line in text.splitlines():
        if line.startswith("jobcast: "):  # the supervisor's own messages to the terminal
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            other.append(line)
    assert other == [], other[:10]
    assert all({"time", "level", "logger", "message", "tier"} <= set(line) for line in lines)
    assert {line["tier"] for line in lines} == {"web", "ws", "worker"}
    # The request id nginx passed on is on the web tier's line for the request, and travelled with
    # the job to the worker's lines about it.
    submits = [line for line in lines if line["logger"] == "jobcast.web.access" and line.get("request_id") == "obs-submit-0"]
    assert len(submits) == 1 and submits[0]["status"] == 201 and submits[0]["route"] == "/api/jobs/"
    failed = observed.jobs[-1]
    about_failed = [line for line in lines if line["tier"] == "worker" and line.get("job_id") == failed["id"]]
    assert about_failed and all(line["request_id"] == f"obs-submit-{JOBS - 1}" for line in about_failed)
    assert any("failed at step 5" in line.get("exc_info", "") for line in about_failed)
    assert any("started after" in line["message"] for line in about_failed)  # the lifecycle's own lines
    # The token in a URL reached the log only redacted.
    assert any("jc_[redacted]" in line["message"] for line in lines if line["tier"] == "web")
    # No credential anywhere: the stack's log (every tier) and nginx's access and error logs.
    logs = text + "".join(p.read_text() for p in (stack.data_dir / "nginx").glob("*.log"))
    token_secret = observed.token.removeprefix("jc_")
    for name, secret in (("API token", token_secret), ("ticket", observed.ticket), ("session cookie", observed.session),
                         ("SECRET_KEY", observed.secret_key)):
        assert len(secret) >= 16 and secret not in logs, f"the {name} is in the logs"
    assert "Bearer jc_" not in logs and "sessionid=" not in logs
