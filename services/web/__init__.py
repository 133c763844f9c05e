"""The web tier: the HTTP API and pages, served by gunicorn (docs/architecture.md)."""
