"""`jobcast submit` and `jobcast watch` (placeholder, replaced below)."""

import click


@click.command()
def submit():
    """Submit a job."""


@click.command()
def watch():
    """Watch a job."""
