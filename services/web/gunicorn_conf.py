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
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _env.jobcast_log_level
# nginx on the same host or pod is the only client; it sets X-Forwarded-*.
forwarded_allow_ips = "127.0.0.1,::1"
proc_name = "jobcast-web"


def child_exit(server, worker):
    """A gunicorn worker is gone: merge its metrics into the dead-process totals."""
    if _env.prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
