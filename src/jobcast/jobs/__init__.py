"""Jobs: the model, the state machine, the registry of kinds and the author's context (docs/jobs.md)."""
