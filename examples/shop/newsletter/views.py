"""The product's pages: its subscribers and a form that sends a newsletter as a jobcast job, and a
campaign's page that shows the job's live progress with jobcast's browser client (jobcast.js)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from jobcast.jobs.services import job_submit
from newsletter.models import Campaign, Subscriber


@login_required
def newsletter_page(request):
    if request.method == "POST":
        campaign = Campaign.objects.create(owner=request.user, subject=request.POST.get("subject", "")[:200] or "News")
        job, _ = job_submit(request.user, "newsletter.send",
                            {"campaign": campaign.id, "pause_ms": int(request.POST.get("pause_ms") or 0)})
        campaign.job_id = job.id
        campaign.save(update_fields=["job_id"])
        return redirect("campaign", campaign_id=campaign.id)
    return render(request, "newsletter/newsletter.html", {
        "subscribers": Subscriber.objects.filter(owner=request.user).order_by("id"),
        "campaigns": Campaign.objects.filter(owner=request.user).order_by("-id")[:10],
    })


@login_required
def campaign_page(request, campaign_id):
    campaign = get_object_or_404(Campaign, id=campaign_id, owner=request.user)
    return render(request, "newsletter/campaign.html", {"campaign": campaign})
