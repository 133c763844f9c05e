"""Jobs: the model, the state machine, the registry of kinds and the author's context.

Docs: docs/writing-jobs.md (authors), docs/workers.md (running them).
"""
