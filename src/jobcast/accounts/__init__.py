"""Accounts: API tokens and WebSocket tickets (docs/auth.md)."""
