"""Built-in job kinds (always registered): demo.count, maintenance.prune_jobs and files.checksum."""
