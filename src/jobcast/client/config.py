"""The client's settings: server URL and token from the environment or a config file.

Order: JOBCAST_URL / JOBCAST_TOKEN, then the file (JOBCAST_CONFIG, default
~/.config/jobcast/client.json, written by `jobcast token --save`), then the default URL.
"""

from __future__ import annotations

import json
from pathlib import Path

from jobcast.env import get_env

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    """Where the client config file lives."""
    configured = get_env().jobcast_config
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "jobcast" / "client.json"


def load_client_config() -> dict:
    """{"url": ..., "token": ...} from the environment and the config file."""
    env = get_env()
    stored = {}
    path = config_path()
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            stored = {}
    return {
        "url": (env.jobcast_url or stored.get("url") or DEFAULT_URL).rstrip("/"),
        "token": env.jobcast_token or stored.get("token") or "",
    }


def save_client_config(url: str | None, token: str) -> Path:
    """Write the server URL and token to the config file (mode 600); returns its path."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": (url or DEFAULT_URL).rstrip("/"), "token": token}, indent=2) + "\n")
    path.chmod(0o600)
    return path
