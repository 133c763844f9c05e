"""Django admin for operators and support staff: jobs (read-only, with their event history) and users.

Registered here, by the web tier (settings use SimpleAdminConfig: no autodiscovery, so the
ws and worker processes never load admin code). Jobs are never edited by hand: state only
changes through jobcast.jobs.services, so the one action is "Cancel", which calls
`job_request_cancel` and records who did it in the job's admin history.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.auth import admin as _auth_admin  # noqa: F401 - registers users and groups (no autodiscovery)
from django.utils.html import format_html, format_html_join

from jobcast.errors import ApiError
from jobcast.events.history import read_history
from jobcast.jobs.documents import job_documents
from jobcast.jobs.models import Job
from jobcast.jobs.services import job_request_cancel
from jobcast.jobs.states import is_terminal
from jobcast.redis_client import get_redis

admin.site.site_header = "jobcast administration"
admin.site.site_title = "jobcast admin"
admin.site.index_title = "Jobs and users"


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "state", "owner", "progress_shown", "created_at", "started_at", "finished_at")
    list_filter = ("state", "kind", "owner")
    search_fields = ("=id",)
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ["cancel_jobs"]
    fields = ("id", "owner", "kind", "state", "progress_shown", "params_shown", "result_shown", "error_shown",
              "attempts", "seq", "idempotency_key", "created_at", "started_at", "finished_at", "history")
    readonly_fields = fields
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        """Search by id: a malformed id matches nothing instead of erroring on the UUID field."""
        import uuid

        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            return queryset.none(), False

    def has_add_permission(self, request):
        return False  # jobs are submitted through the API or the pages, which validate params

    def has_change_permission(self, request, obj=None):
        return False  # read-only: state changes go through the lifecycle services only

    def has_delete_permission(self, request, obj=None):
        return False  # maintenance.prune_jobs deletes finished jobs

    @admin.display(description="progress")
    def progress_shown(self, job: Job) -> str:
        progress = job.progress or {}
        if progress.get("percent") is not None:
            return f"{progress['percent']:g}% ({progress.get('current')}/{progress.get('total')})"
        return str(progress.get("current", 0))

    @admin.display(description="params")
    def params_shown(self, job: Job):
        return format_html("<pre>{}</pre>", json.dumps(job.params, indent=2))

    @admin.display(description="result")
    def result_shown(self, job: Job):
        return format_html("<pre>{}</pre>", json.dumps(job.result, indent=2)) if job.result is not None else "-"

    @admin.display(description="error")
    def error_shown(self, job: Job):
        return f"{job.error['type']}: {job.error['message']}" if job.error else "-"

    @admin.display(description="event history (seq, type, event)")
    def history(self, job: Job):
        """The job's stored events, read-only, as they were sent on the sockets."""
        (document,) = job_documents([job])
        stored = read_history(get_redis(), job.id, 0, known_seq=document.seq)
        if not stored.events:
            return "no stored events (none yet, or expired after JOBCAST_HISTORY_TTL)"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                                ((event.seq, event.type, event.text) for event in stored.events))
        note = "" if stored.complete else "Older events were trimmed (JOBCAST_HISTORY_MAXLEN)."
        return format_html("<p>{}</p><table><thead><tr><th>seq</th><th>type</th><th>event</th></tr></thead>"
                           "<tbody>{}</tbody></table>", note, rows)

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        asked = ended = 0
        for job in queryset.select_related("owner"):
            if is_terminal(job.state):
                ended += 1
                continue
            try:
                job = job_request_cancel(job)
            except ApiError:
                ended += 1
                continue
            asked += 1
            self.log_change(request, job, f"Cancel requested (state then: {job.state}).")
        if asked:
            self.message_user(request, f"Cancel requested for {asked} job(s); a running job stops at its next check.",
                              messages.SUCCESS)
        if ended:
            self.message_user(request, f"{ended} job(s) had already finished.", messages.WARNING)

