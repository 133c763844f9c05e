"""gunicorn settings for `jobcast run web` (values from jobcast.conf, docs/configuration.md)."""


from jobcast import use_settings
from jobcast.conf import option
from jobcast.health import watch_redis_at_start
from jobcast.logs import set_tier, tier_logging

use_settings()  # the process's DJANGO_SETTINGS_MODULE (`jobcast run web --settings`), else jobcast's
set_tier("web")

bind = f"{option('BIND')}:{option('WEB_PORT')}"
workers = option("WEB_CONCURRENCY")
worker_class = "gthread"
threads = option("WEB_THREADS")
# In-flight requests get this long to finish on SIGTERM (a rolling deploy's drain).
graceful_timeout = 25
timeout = 60
# Longer than nginx's upstream keepalive_timeout (60 s, nginx's default; see
# deploy/nginx/jobcast.conf.template): nginx must be the side that closes an idle kept-alive
# connection. With gunicorn closing first (its default, 2-5 s), nginx now and then sends a
# request on a connection gunicorn is closing and answers 502 — and never retries a POST.
keepalive = 75
# One access line per request comes from jobcast.web.middleware (with the request's id);
# gunicorn's own lines use jobcast's logging (JSON or text, jobcast.logs).
accesslog = None
errorlog = "-"
logconfig_dict = tier_logging()
loglevel = option("LOG_LEVEL")
# nginx is the only client; its X-Forwarded-* are trusted from these addresses
# (JOBCAST_FORWARDED_ALLOW_IPS: loopback by default, the compose network in compose).
forwarded_allow_ips = option("FORWARDED_ALLOW_IPS")
proc_name = "jobcast-web"


def post_worker_init(worker):
    """The first worker says in one line if Redis cannot be reached (every worker answers /readyz 503 meanwhile).

    In a worker, not in the master: a thread of the master's, caught mid-import or mid-call
    when it forks, would leave its workers a lock nobody releases.
    """
    if worker.age == 1:
        watch_redis_at_start()


def child_exit(server, worker):
    """A gunicorn worker is gone: merge its metrics into the dead-process totals."""
    if option("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
