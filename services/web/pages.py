"""The web tier's pages (Django templates, no build step): my jobs, a job, the submit form, and
the staff's all-jobs page. Live updates come from /static/jobcast/jobcast.js over /ws/jobs/.

Views stay thin: they read through the selectors and documents, change through the services,
and render. The submit form posts here (it works without JavaScript); the page's script
checks the same constraints first and shows both kinds of message next to the fields.
"""

from __future__ import annotations

import json

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobcast.errors import ApiError
from jobcast.events.history import read_history
from jobcast.jobs.documents import job_documents
from jobcast.jobs.registry import all_kinds, get_kind
from jobcast.jobs.selectors import ALL_ACTIVE_LIMIT, job_get_for_user, job_list_for_user, jobs_active_all
from jobcast.jobs.services import job_cancel, job_submit
from jobcast.jobs.states import State, is_terminal
from jobcast.events.schema import LogEvent, parse_event
from jobcast.redis_client import get_redis
from jobcast.web import forms

PAGE_SIZE = 25


@login_required
def jobs_page(request):
    """My jobs, newest first, with a live bar per active job; new jobs appear as they are submitted."""
    cursor = request.GET.get("cursor") or None
    try:
        jobs, next_cursor = job_list_for_user(request.user, limit=PAGE_SIZE, cursor=cursor)
    except ApiError:
        raise Http404() from None
    documents = job_documents(jobs)
    return render(request, "jobcast/jobs.html", {
        "jobs": documents, "jobs_data": [doc.model_dump(mode="json") for doc in documents],
        "next_cursor": next_cursor, "first_page": cursor is None, "nav": "jobs",
    })


@login_required
def job_page(request, job_id):
    """One job: bar, ETA, message, its log lines streaming in, result or error, and a cancel button."""
    job = job_get_for_user(request.user, job_id)
    if job is None:
        raise Http404()
    (document,) = job_documents([job])
    # The log lines up to the document's seq; the page's watch resumes after it (no gap, no repeat).
    history = read_history(get_redis(), job.id, 0, known_seq=document.seq)
    logs = []
    for stored in history.events:
        if stored.type == "log":
            event = parse_event(stored.text)
            if event.seq <= document.seq and isinstance(event, LogEvent):
                logs.append(event)
    return render(request, "jobcast/job.html", {
        "job": document, "job_data": document.model_dump(mode="json"), "logs": logs, "logs_complete": history.complete,
        "terminal": is_terminal(document.state), "nav": "jobs",
        "result_json": json.dumps(document.result, indent=2) if document.state == State.SUCCEEDED else "",
    })


@login_required
@require_POST
def cancel_page(request, job_id):
    """The cancel button without JavaScript: cancel, then back to the job's page."""
    try:
        job_cancel(request.user, job_id)
    except ApiError as exc:
        if exc.status == 404:
            raise Http404() from None
        # 409: it finished meanwhile; its page shows how.
    return redirect("job", job_id=job_id)


@login_required
def submit_page(request):
    """The submit form of a kind, generated from its params' JSON Schema."""
    kinds = all_kinds()
    name = request.POST.get("kind") or request.GET.get("kind") or (kinds[0].name if kinds else "")
    kind = get_kind(name)
    if kind is None:
        raise Http404()
    fields = forms.fields_for(kind.params_schema())
    general: list[str] = []
    if request.method == "POST":
        params = forms.parse(fields, request.POST)
        if not any(item.errors for item in fields):
            try:
                job, _ = job_submit(request.user, kind.name, params)
            except ApiError as exc:
                if exc.status != 400:
                    general.append(exc.detail + (f" Retry in {exc.headers['Retry-After']} s." if "Retry-After" in exc.headers else ""))
                else:
                    general = forms.attach_errors(fields, exc.errors)
                    if not general and not any(item.errors for item in fields):
                        general.append(exc.detail)
            else:
                return redirect("job", job_id=job.id)
    # A form with errors is shown again with status 200, as Django's form views do.
    return render(request, "jobcast/submit.html", {
        "kinds": kinds, "kind": kind, "fields": fields, "general_errors": general,
        "has_errors": bool(general) or any(item.errors for item in fields), "nav": "submit",
    })


@staff_member_required(login_url="/accounts/login/")
def all_jobs_page(request):
    """Staff: every user's queued and running jobs, live, with how long each has waited or run."""
    jobs = jobs_active_all()
    documents = job_documents(jobs)
    return render(request, "jobcast/all_jobs.html", {
        "rows": [(document, job.owner.get_username()) for document, job in zip(documents, jobs)],
        "jobs_data": [document.model_dump(mode="json") for document in documents],
        "limit": ALL_ACTIVE_LIMIT, "admin_url": reverse("admin:jobcast_jobs_job_changelist"), "nav": "all",
    })
