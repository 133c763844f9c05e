"""Accounts: API tokens and WebSocket tickets (docs/protocol.md, Auth)."""
