"""jobcast.logs: JSON and text lines with the tier, request and job, and credentials redacted."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest

from jobcast import logs


def record(message: str, *args, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("jobcast.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    logs.ContextFilter().filter(rec)
    return rec


@pytest.fixture
def context():
    logs.set_tier("web")
    request = logs.request_id_var.set("req-1")
    job = logs.job_id_var.set("job-1")
    yield
    logs.job_id_var.reset(job)
    logs.request_id_var.reset(request)
    logs.set_tier("jobcast")


def test_a_json_line_has_the_tier_request_and_job(context):
    line = json.loads(logs.JsonLineFormatter().format(record("job %s started", "job-1", kind="demo.count")))
    assert line["tier"] == "web" and line["request_id"] == "req-1" and line["job_id"] == "job-1"
    assert line["message"] == "job job-1 started" and line["kind"] == "demo.count"
    assert line["level"] == "INFO" and line["logger"] == "jobcast.test" and line["time"].endswith("+00:00")


def test_unknown_context_is_left_out_of_a_json_line():
    line = json.loads(logs.JsonLineFormatter().format(record("hello")))
    assert "request_id" not in line and "job_id" not in line and line["tier"]


def test_a_text_line_reads_well(context):
    text = logs.TextFormatter().format(record("hello"))
    assert text.endswith("web    jobcast.test [request=req-1 job=job-1] hello")


SECRETS = [
    ("GET /api/jobs/jc_AbCdEf0123456789abcdefghij-_x/", "jc_AbCdEf0123456789abcdefghij-_x"),
    ('"WebSocket /ws/jobs/1/?after=0&ticket=Zm9vYmFyYmF6cXV4cXV1eA" [accepted]', "Zm9vYmFyYmF6cXV4cXV1eA"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345"),
    ("Cookie: sessionid=3kq9x8u0c1n2b3v4m5l6k7j8h9g0f1d2", "3kq9x8u0c1n2b3v4m5l6k7j8h9g0f1d2"),
    ("connecting to redis://:s3cr3t-pass@redis.example.com:6379/0", "s3cr3t-pass"),
    ("postgres://jobcast:hunter2hunter2@db:5432/jobcast", "hunter2hunter2"),
]


@pytest.mark.parametrize("text, secret", SECRETS)
def test_credentials_are_redacted_and_the_json_stays_json(text, secret):
    formatted = logs.JsonLineFormatter().format(record("%s", text))
    assert secret not in formatted
    assert "[redacted]" in json.loads(formatted)["message"]
    assert secret not in logs.TextFormatter().format(record("%s", text))


def test_the_secret_key_is_redacted(settings):
    settings.SECRET_KEY = "a-very-secret-key-0123456789-abcdefghij"
    assert logs.redact(f"key is {settings.SECRET_KEY}!") == "key is [redacted]!"


def test_a_traceback_is_redacted_too():
    try:
        raise ValueError("bad token jc_AbCdEf0123456789abcdefghij")
    except ValueError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = json.loads(logs.JsonLineFormatter().format(rec))
    assert "jc_AbCdEf" not in line["exc_info"] and "jc_[redacted]" in line["exc_info"]


@pytest.mark.parametrize("given, kept", [("obs-1", True), ("7f1c2b", True), ("", False), (None, False),
                                         ("a b", False), ('x"}', False), ("x" * 200, False)])
def test_a_request_id_is_kept_only_when_it_is_a_sane_token(given, kept):
    result = logs.clean_request_id(given)
    assert (result == given) is kept and len(result) <= 128


def test_the_logging_config_sends_every_servers_logger_to_one_handler():
    config = logs.logging_config("json", "info")
    logging.config.dictConfig(config)
    try:
        for name in ("gunicorn.error", "uvicorn.error", "celery"):
            assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
        assert logging.getLogger("uvicorn.access").propagate is False
    finally:
        from django.conf import settings

        logging.config.dictConfig(settings.LOGGING)


# --- where the settings meet the servers --------------------------------------------------------


@pytest.fixture
def fresh_env(monkeypatch):
    """jobcast.env read again from a patched environment (and forgotten afterwards)."""
    from jobcast.env import get_env

    for name in ("JOBCAST_LOG_FORMAT", "JOBCAST_CELERY_TASK_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    get_env.cache_clear()
    yield monkeypatch
    get_env.cache_clear()


def test_jobcast_run_logs_text_unless_told_otherwise(fresh_env, tmp_path):
    from jobcast.cli.stack import Stack
    from jobcast.env import get_env

    fresh_env.setenv("JOBCAST_DATA_DIR", str(tmp_path))
    assert Stack().child_env("redis://127.0.0.1:1/0")["JOBCAST_LOG_FORMAT"] == "text"
    fresh_env.setenv("JOBCAST_LOG_FORMAT", "json")
    get_env.cache_clear()
    assert Stack().child_env("redis://127.0.0.1:1/0")["JOBCAST_LOG_FORMAT"] == "json"


def test_celerys_banner_is_left_out_of_json_logs(fresh_env):
    from jobcast.cli.tiers import tier_command
    from jobcast.env import get_env

    assert "-q" in tier_command("worker")  # json by default
    fresh_env.setenv("JOBCAST_LOG_FORMAT", "text")
    get_env.cache_clear()
    assert "-q" not in tier_command("worker")


@pytest.mark.parametrize("enabled", [False, True])
def test_celery_task_events_follow_the_setting(settings, enabled):
    from jobcast.jobs.queue import _celery_settings

    settings.JOBCAST = {**settings.JOBCAST, "CELERY_TASK_EVENTS": enabled}
    conf = _celery_settings()
    assert conf["worker_send_task_events"] is enabled and conf["task_send_sent_event"] is enabled
