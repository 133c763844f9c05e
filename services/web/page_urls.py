"""jobcast's own pages (my jobs, a job, the submit form, the staff page) as a URLconf.

jobcast's standalone project includes them at the root. They link to each other, to
`login`/`logout` and to the admin by URL name, and their script talks to `/api/` and `/ws/`
at the root: a product builds its own pages with jobcast.js instead (docs/integration.md).
"""

from django.urls import path

from jobcast.web import pages

urlpatterns = [
    path("jobs/", pages.jobs_page, name="jobs"),
    path("jobs/new/", pages.submit_page, name="submit"),
    path("jobs/<uuid:job_id>/", pages.job_page, name="job"),
    path("jobs/<uuid:job_id>/cancel/", pages.cancel_page, name="cancel"),
    path("staff/jobs/", pages.all_jobs_page, name="all_jobs"),
]
