"""Job events: their schema, the one publisher, and the per-job history (docs/events.md)."""
