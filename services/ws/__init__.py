"""The ws tier: Channels consumers streaming job events, served by uvicorn (docs/protocol.md)."""
