"""The one module that reads the environment (see docs/configuration.md).

Every variable jobcast reads is a field here, with its default; a test checks that
docs/configuration.md lists each of them and that no other module reads os.environ.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# One place per user, so `jobcast token` finds the database `jobcast run` made, from any folder.
DATA_DIR_DEFAULT = "~/.local/share/jobcast"


class Env(BaseSettings):
    """jobcast's configuration, read from environment variables (names case-insensitive)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # Core services. Empty means "embedded default": `jobcast run` fills them in.
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""
    allowed_hosts: str = "127.0.0.1,localhost"
    csrf_trusted_origins: str = ""
    debug: bool = False
    secure_hsts_seconds: int = Field(31_536_000, ge=0)  # HSTS max-age on answers to HTTPS requests; 0: none

    jobcast_data_dir: str = DATA_DIR_DEFAULT
    jobcast_kind_modules: str = ""
    # files.checksum reads only under this folder; empty means <data dir>/files.
    jobcast_files_root: str = ""
    jobcast_progress_max_rate: float = Field(20.0, ge=0)
    jobcast_history_maxlen: int = Field(1000, ge=1)
    jobcast_history_ttl: int = Field(86400, ge=1)
    jobcast_max_body_bytes: int = Field(1_048_576, ge=1024)
    jobcast_submit_rate_per_minute: int = Field(600, ge=0)
    jobcast_ticket_ttl: int = Field(30, ge=1, le=60)
    jobcast_max_attempts: int = Field(3, ge=1)
    jobcast_visibility_timeout: int = Field(3600, ge=10)
    jobcast_lease_seconds: float = Field(15.0, ge=1)
    jobcast_recovery_check_seconds: float = Field(30.0, gt=0)
    jobcast_cancel_check_interval: float = Field(0.2, gt=0, le=1.0)
    jobcast_redis_retry_seconds: float = Field(30.0, ge=0)
    jobcast_ws_max_connections: int = Field(10000, ge=1)
    jobcast_ws_max_connections_per_user: int = Field(1000, ge=1)
    jobcast_ws_ping_interval: float = Field(20.0, gt=0)
    jobcast_ws_send_timeout: float = Field(20.0, gt=0)
    jobcast_ws_drain_seconds: float = Field(10.0, ge=0)
    jobcast_ws_shutdown_grace_seconds: float = Field(10.0, ge=0)
    jobcast_proxy_ws_timeout: int = Field(3600, ge=1)
    jobcast_channel_capacity: int = Field(1000, ge=10)
    jobcast_ws_resync_seconds: float = Field(5.0, gt=0)
    jobcast_ws_token_recheck_seconds: float = Field(30.0, gt=0)
    jobcast_max_active_jobs_per_user: int = Field(1000, ge=0)
    # Product-signed stream tokens (docs/integration.md): off until a secret or a public key is set.
    jobcast_jwt_secret: str = ""
    jobcast_jwt_public_key: str = ""
    jobcast_jwt_audience: str = "jobcast"
    jobcast_jwt_issuer: str = ""

    # Servers started by `jobcast run <tier>`.
    jobcast_bind: str = "127.0.0.1"
    # Addresses (or CIDRs, comma-separated) of the proxies whose X-Forwarded-* the tiers trust.
    jobcast_forwarded_allow_ips: str = "127.0.0.1,::1"
    jobcast_port: int = 8000
    jobcast_front_door: Literal["auto", "nginx", "uvicorn"] = "auto"
    jobcast_web_port: int = 8001
    jobcast_ws_port: int = 8002
    web_concurrency: int = Field(2, ge=1)
    jobcast_web_threads: int = Field(4, ge=1)
    jobcast_ws_instances: int = Field(1, ge=1, le=16)
    jobcast_worker_concurrency: int = Field(2, ge=1)
    jobcast_worker_shutdown_seconds: float = Field(25.0, ge=0)
    jobcast_log_level: str = "info"
    jobcast_log_format: Literal["json", "text"] = "json"
    jobcast_celery_task_events: bool = False
    jobcast_worker_metrics_port: int = Field(9101, ge=0, le=65535)
    # prometheus-client reads this itself; `jobcast run web|worker` sets it (jobcast.metrics).
    prometheus_multiproc_dir: str = ""

    # Client commands (`jobcast submit|watch`).
    jobcast_url: str = ""
    jobcast_token: str = ""
    jobcast_config: str = ""

    @property
    def data_dir(self) -> Path:
        """Folder for the embedded defaults (SQLite file, local Redis, generated secret)."""
        return Path(self.jobcast_data_dir).expanduser().resolve()

    @property
    def files_root(self) -> Path:
        """The only folder the files.checksum kind reads (docs/writing-jobs.md)."""
        if self.jobcast_files_root:
            return Path(self.jobcast_files_root).expanduser().resolve()
        return self.data_dir / "files"


@functools.lru_cache(maxsize=1)
def get_env() -> Env:
    """The environment as read once per process."""
    return Env()


def environ_for_child(**overrides: str) -> dict[str, str]:
    """A copy of this process's environment with overrides, for the processes `jobcast run` starts."""
    child = dict(os.environ)
    child.update(overrides)
    return child
