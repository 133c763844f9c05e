"""jobcast inside an existing Django product (examples/shop): its three tiers as real processes,
started with `jobcast run web|ws|worker --settings shop.settings`, on real Redis and PostgreSQL.

The product has its own settings, a custom user model (customers.Customer, signing in by email,
no username field), jobcast's HTTP API mounted under /jobcast/ and its ws routes under the same
prefix in its own ASGI router, and a job kind (newsletter.send) that reads and writes its models.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from jobcast.cli.stack import free_port
from tests.support import REPO, start_redis, stop_process, stream_to_the_end, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SHOP = REPO / "examples" / "shop"
PASSWORD = "ann-password-1"


def _postgres_server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("the example product runs on PostgreSQL: this runs in the PostgreSQL pass (make test-postgres)")
    return url


class Shop:
    def __init__(self, env: dict, web_port: int, ws_port: int, metrics_port: int):
        self.env, self.web_port, self.ws_port, self.metrics_port = env, web_port, ws_port, metrics_port
        self.url = f"http://127.0.0.1:{web_port}"

    def jobcast(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A `jobcast` command on the product's settings, run from the product's folder."""
        done = subprocess.run([sys.executable, "-m", "jobcast.cli.main", *args], cwd=SHOP, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def python(self, code: str):
        """Run Django code of the product (its models) in `manage.py shell`; returns what it prints, as JSON."""
        out = self.jobcast("manage", "shell", "--settings", "shop.settings", "-c", code).stdout
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    import psycopg

    server = urlsplit(_postgres_server())
    name = f"int_shop_{secrets.token_hex(4)}"
    admin = dict(host=server.hostname, port=server.port or 5432, user=server.username or "postgres",
                 dbname="postgres", autocommit=True)
    workdir = tmp_path_factory.mktemp("shop")
    redis = start_redis(workdir / "redis")
    processes: list[subprocess.Popen] = []
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        web_port, ws_port, metrics_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCAST_", "REDIS_URL", "DJANGO_", "DATABASE_URL"))}
        env.update(
            SHOP_DATABASE_URL=server._replace(path=f"/{name}").geturl(), SHOP_REDIS_URL=redis.url,
            JOBCAST_DATA_DIR=str(workdir / "data"), JOBCAST_WEB_PORT=str(web_port), JOBCAST_WS_PORT=str(ws_port),
            JOBCAST_WORKER_METRICS_PORT=str(metrics_port), JOBCAST_LOG_FORMAT="text", WEB_CONCURRENCY="1",
            JOBCAST_WORKER_CONCURRENCY="1", PYTHONUNBUFFERED="1",
        )
        shop = Shop(env, web_port, ws_port, metrics_port)
        shop.jobcast("manage", "migrate", "--settings", "shop.settings", "--noinput", "-v", "0")
        for tier in ("web", "ws", "worker"):
            with open(workdir / f"{tier}.log", "wb") as log:
                processes.append(subprocess.Popen([sys.executable, "-m", "jobcast.cli.main", "run", tier, "--settings",
                                                   "shop.settings"], cwd=SHOP, env=env, stdout=log, stderr=subprocess.STDOUT))

        def ready():
            for process, tier in zip(processes, ("web", "ws", "worker")):
                if process.poll() is not None:
                    raise RuntimeError(f"{tier} exited: {(workdir / f'{tier}.log').read_text()[-3000:]}")
            try:
                return all(httpx.get(url, timeout=2).status_code == 200 for url in (
                    f"{shop.url}/readyz", f"http://127.0.0.1:{ws_port}/readyz", f"http://127.0.0.1:{metrics_port}/healthz"))
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, "the product's three tiers", interval=0.3)
        shop.logs = {tier: workdir / f"{tier}.log" for tier in ("web", "ws", "worker")}
        yield shop
    finally:
        for process in reversed(processes):
            stop_process(process, signal.SIGTERM, timeout=40)
        redis.stop()
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sign_in(shop: Shop, email: str, password: str) -> httpx.Client:
    """The product's own login form (its custom user model's USERNAME_FIELD is the email)."""
    client = httpx.Client(base_url=shop.url, timeout=30)
    client.get("/login/")
    answer = client.post("/login/", data={"username": email, "password": password, "next": "/newsletter/",
                                          "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    assert answer.status_code == 302 and answer.headers["location"] == "/newsletter/", answer.text[:500]
    return client


def test_a_product_user_sends_a_newsletter_and_watches_it_live(shop):
    emails = [f"reader{i}@example.org" for i in range(5)]
    customer = shop.python(
        "from customers.models import Customer; from newsletter.models import Subscriber; import json\n"
        f"c = Customer.objects.create_user('ann@example.com', {PASSWORD!r}, display_name='Ann')\n"
        f"Subscriber.objects.bulk_create([Subscriber(owner=c, email=e) for e in {emails!r}])\n"
        "print(json.dumps({'id': c.id}))")

    client = sign_in(shop, "ann@example.com", PASSWORD)
    page = client.get("/newsletter/")
    assert page.status_code == 200 and "Send to 5 subscribers" in page.text
    sent = client.post("/newsletter/", data={"subject": "Spring sale", "pause_ms": "100",
                                             "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    assert sent.status_code == 302, sent.text[:500]
    campaign_page = client.get(sent.headers["location"])
    assert campaign_page.status_code == 200
    # The page watches the job with jobcast's browser client, from the product's static files, under the prefix.
    assert 'from "/static/jobcast/jobcast.js"' in campaign_page.text and 'baseUrl: "/jobcast"' in campaign_page.text
    job_id = re.search(r'watchJob\("([0-9a-f-]{36})"', campaign_page.text).group(1)

    # The user's socket, with the product's session cookie, sees the whole stream from seq 1.
    headers = {"Cookie": f"sessionid={client.cookies['sessionid']}", "Origin": shop.url}
    messages, code = asyncio.run(stream_to_the_end(f"ws://127.0.0.1:{shop.ws_port}/jobcast/ws/jobs/{job_id}/?after=0", headers))
    assert code == 1000, messages
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[0]["type"] == "state" and messages[0]["state"] == "running"
    assert [m["message"] for m in messages if m["type"] == "progress"] == emails
    assert [m["message"] for m in messages if m["type"] == "log"] == ["sending 'Spring sale' to 5 subscribers", "all sent"]
    assert messages[-1]["type"] == "state" and messages[-1]["state"] == "succeeded" and messages[-1]["result"] == {"sent": 5}

    # The kind wrote the product's own models, for the product's user.
    rows = shop.python(
        "from newsletter.models import Subscriber, Campaign; import json\n"
        "print(json.dumps({'subscribers': [[s.email, s.last_subject, s.sent_at is not None] for s in Subscriber.objects.order_by('id')],"
        " 'campaign': list(Campaign.objects.values_list('owner_id', 'sent', 'job_id'))[0]}, default=str))")
    assert rows["subscribers"] == [[email, "Spring sale", True] for email in emails]
    assert rows["campaign"] == [customer["id"], 5, job_id]

    # jobcast's API under the product's prefix, with the product's session; the job is the customer's.
    answer = client.get(f"/jobcast/api/jobs/{job_id}/")
    assert answer.status_code == 200 and answer.json()["state"] == "succeeded"
    # An API token for the custom user (found by its USERNAME_FIELD), made by `jobcast token`.
    token = shop.jobcast("token", "ann@example.com", "--settings", "shop.settings").stdout.strip()
    listed = httpx.get(f"{shop.url}/jobcast/api/jobs/", headers={"Authorization": f"Bearer {token}"}).json()
    assert [job["id"] for job in listed["items"]] == [job_id]

    # Another customer's session cannot open it (4404), as with jobcast's own users.
    shop.python("from customers.models import Customer; import json\n"
                f"Customer.objects.create_user('bo@example.com', {PASSWORD!r}); print('{{}}')")
    other = sign_in(shop, "bo@example.com", PASSWORD)
    _, code = asyncio.run(stream_to_the_end(f"ws://127.0.0.1:{shop.ws_port}/jobcast/ws/jobs/{job_id}/",
                                 {"Cookie": f"sessionid={other.cookies['sessionid']}", "Origin": shop.url}))
    assert code == 4404


def test_the_ws_tier_keeps_its_operator_endpoints_and_refuses_unknown_paths(shop):
    metrics = httpx.get(f"http://127.0.0.1:{shop.ws_port}/metrics")
    assert metrics.status_code == 200 and "jobcast_ws_connections" in metrics.text

    assert asyncio.run(stream_to_the_end(f"ws://127.0.0.1:{shop.ws_port}/jobcast/ws/nothing/")) == ([], 4404)
