"""`jobcast nginx-config`: render deploy/nginx/jobcast.conf.template for your own hosts."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import click

from jobcast.env import get_env

NGINX_TEMPLATE = Path("deploy") / "nginx" / "jobcast.conf.template"
# For an nginx installed without /etc/nginx/mime.types: enough for the API and static files.
MINIMAL_MIME_TYPES = """types {
    text/html html; text/css css; application/javascript js; application/json json;
    image/png png; image/svg+xml svg; image/x-icon ico; font/woff2 woff2;
}
"""


def find_nginx() -> str | None:
    """The nginx binary, if installed."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_nginx_template() -> Path | None:
    """deploy/nginx/jobcast.conf.template from the working directory or the source checkout."""
    for root in (Path.cwd(), *Path(__file__).resolve().parents):
        if (root / NGINX_TEMPLATE).is_file():
            return root / NGINX_TEMPLATE
    return None


def render_nginx_config(template: Path, *, listen: str, web: list[str], ws: list[str], max_body_bytes: int,
                        static_root: str, temp_dir: str, pid_file: str, error_log: str, access_log: str,
                        mime_types: str = "/etc/nginx/mime.types", trusted_proxies: str = "127.0.0.1",
                        resolver: str | None = None, ws_read_timeout: str = "3600s") -> str:
    """The nginx config for these addresses and paths (the one template production uses too).

    With a `resolver`, upstream host names are re-resolved while nginx runs (nginx ≥ 1.27.3),
    so scaled-out containers join without a reload.
    """
    resolve = " resolve" if resolver else ""
    values = {
        "LISTEN": listen,
        "RESOLVER": f"    resolver {resolver} valid=10s ipv6=off;" if resolver else "    # upstreams are fixed addresses: no resolver",
        "WEB_SERVERS": "\n".join(f"        server {addr}{resolve} max_fails=0;" for addr in web),
        "WS_SERVERS": "\n".join(f"        server {addr}{resolve} max_fails=0;" for addr in ws),
        "MAX_BODY_BYTES": str(max_body_bytes),
        "STATIC_ROOT": static_root,
        "TEMP_DIR": temp_dir,
        "PID_FILE": pid_file,
        "ERROR_LOG": error_log,
        "ACCESS_LOG": access_log,
        "MIME_TYPES": mime_types,
        "TRUSTED_PROXIES": trusted_proxies,
        "WS_READ_TIMEOUT": ws_read_timeout,
    }
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    missing = set(re.findall(r"__([A-Z][A-Z_]*)__", text))
    if missing:
        raise ValueError(f"nginx template placeholders without a value: {sorted(missing)}")
    return text


@click.command("nginx-config")
@click.option("--listen", default="8080", show_default=True, help="nginx's listen address or port.")
@click.option("--web", "web", multiple=True, default=["127.0.0.1:8001"], show_default=True, help="A web tier address (repeat).")
@click.option("--ws", "ws", multiple=True, default=["127.0.0.1:8002"], show_default=True, help="A ws tier address (repeat).")
@click.option("--static-root", default="/static", show_default=True, help="Folder of `jobcast manage collectstatic`.")
@click.option("--resolver", default=None, help="DNS server for upstream names (e.g. 127.0.0.11 in Docker).")
@click.option("--trusted-proxies", default="127.0.0.1", show_default=True, help="CIDR of load balancers whose X-Forwarded-For is trusted.")
@click.option("--temp-dir", default="/tmp", show_default=True)
@click.option("--pid-file", default="/tmp/nginx.pid", show_default=True)
@click.option("--error-log", default="/dev/stderr", show_default=True)
@click.option("--access-log", default="/dev/stdout", show_default=True)
@click.option("--mime-types", default="/etc/nginx/mime.types", show_default=True)
def nginx_config(listen, web, ws, static_root, resolver, trusted_proxies, temp_dir, pid_file, error_log, access_log, mime_types):
    """Print an nginx.conf for jobcast's front door (docs/deploy.md)."""
    template = find_nginx_template()
    if template is None:
        raise click.ClickException("deploy/nginx/jobcast.conf.template not found (run from the jobcast checkout or image)")
    click.echo(render_nginx_config(
        template, listen=listen, web=list(web), ws=list(ws), max_body_bytes=get_env().jobcast_max_body_bytes,
        static_root=static_root, temp_dir=temp_dir, pid_file=pid_file, error_log=error_log,
        access_log=access_log, mime_types=mime_types, trusted_proxies=trusted_proxies, resolver=resolver,
        ws_read_timeout=f"{get_env().jobcast_proxy_ws_timeout}s",
    ), nl=False)
