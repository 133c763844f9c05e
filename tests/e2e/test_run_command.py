"""`jobcast run` itself: the uvicorn front door without nginx, `jobcast manage`, and a clean Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal

import orjson
import pytest
import websockets

from tests.e2e.conftest import start_stack
from tests.support import wait_until

pytestmark = [pytest.mark.e2e]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_fallback_front_door_serves_http_and_websocket_and_ctrl_c_stops_everything(tmp_path):
    stack, stop = start_stack(tmp_path, JOBCAST_FRONT_DOOR="uvicorn")
    try:
        assert b"front door: uvicorn" in stack.log.read_bytes()
        processes = {name: stack.pids(name) for name in ("gunicorn", "jobcast.ws.server", "celery", "redis-server")}
        assert all(processes.values()), processes
        assert not stack.pids("nginx")

        with stack.client() as client:
            job = client.post("/api/jobs/", json={"kind": "demo.count", "params": {"steps": 5}}).json()

        async def watch():
            headers = {"Authorization": f"Bearer {stack.token('e2e')}"}
            async with websockets.connect(f"{stack.ws_url}/ws/jobs/{job['id']}/?after=0", additional_headers=headers) as ws:
                return [orjson.loads(m) async for m in ws], ws.close_code

        messages, code = asyncio.run(asyncio.wait_for(watch(), 60))
        assert code == 1000 and messages[-1]["state"] == "succeeded"
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))

        migrations = stack.jobcast("manage", "showmigrations", "jobcast_jobs")
        assert migrations.returncode == 0 and "[X] 0001_initial" in migrations.stdout

        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(timeout=60) == 0
        pids = [pid for group in processes.values() for pid in group]
        wait_until(lambda: not any(alive(pid) for pid in pids), 10, "every child to exit")
    finally:
        stop()


def test_an_unknown_tier_is_refused_with_a_clear_message(tmp_path):
    stack_env = {**os.environ, "JOBCAST_DATA_DIR": str(tmp_path)}
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "jobcast.cli.main", "run", "nope"], env=stack_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Invalid value" in done.stderr and "Traceback" not in done.stderr
