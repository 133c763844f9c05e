"""The `jobcast` command line (docs/cli.md)."""
