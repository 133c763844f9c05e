"""gunicorn settings for `jobcast run web` (values from jobcast.env, docs/configuration.md)."""

from jobcast.env import get_env

_env = get_env()

bind = f"{_env.jobcast_bind}:{_env.jobcast_web_port}"
workers = _env.web_concurrency
worker_class = "gthread"
threads = _env.jobcast_web_threads
# In-flight requests get this long to finish on SIGTERM (a rolling deploy's drain).
graceful_timeout = 25
timeout = 60
# Longer than nginx's upstream keepalive_timeout (60 s, nginx's default; see
# deploy/nginx/jobcast.conf.template): nginx must be the side that closes an idle kept-alive
# connection. With gunicorn closing first (its default, 2-5 s), nginx now and then sends a
# request on a connection gunicorn is closing and answers 502 — and never retries a POST.
keepalive = 75
accesslog = "-"
errorlog = "-"
loglevel = _env.jobcast_log_level
# nginx is the only client; its X-Forwarded-* are trusted from these addresses
# (JOBCAST_FORWARDED_ALLOW_IPS: loopback by default, the compose network in compose).
forwarded_allow_ips = _env.jobcast_forwarded_allow_ips
proc_name = "jobcast-web"


def child_exit(server, worker):
    """A gunicorn worker is gone: merge its metrics into the dead-process totals."""
    if _env.prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
