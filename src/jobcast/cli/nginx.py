"""`jobcast nginx-config`: render deploy/nginx/jobcast.conf.template for your own hosts."""

from __future__ import annotations

import click

from jobcast.cli.stack import find_nginx_template, render_nginx_config
from jobcast.env import get_env


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
