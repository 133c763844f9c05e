"""Built-in job kinds (always registered): demo.count and maintenance.prune_jobs."""
