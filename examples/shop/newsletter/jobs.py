"""The product's job kind (named in JOBCAST["KIND_MODULES"]): it reads and writes the product's models,
for the product's user who submitted it."""

from django.utils import timezone
from pydantic import BaseModel, Field

from jobcast.jobs.registry import job
from newsletter.models import Campaign, Subscriber


class SendParams(BaseModel):
    campaign: int = Field(ge=1, description="The Campaign to send.")
    pause_ms: int = Field(0, ge=0, le=5000, description="Pause after each mail, in milliseconds.")


@job("newsletter.send", params=SendParams, title="Send a newsletter")
def send(ctx, params):
    campaign = Campaign.objects.get(id=params.campaign, owner_id=ctx.owner_id)  # the submitter's own
    pending = list(Subscriber.objects.filter(owner_id=ctx.owner_id, sent_at__isnull=True).order_by("id"))
    ctx.log(f"sending {campaign.subject!r} to {len(pending)} subscribers")
    for i, subscriber in enumerate(pending, 1):
        # A real product would hand the mail to its mailer here.
        Subscriber.objects.filter(id=subscriber.id).update(sent_at=timezone.now(), last_subject=campaign.subject)
        Campaign.objects.filter(id=campaign.id).update(sent=i)
        ctx.progress(i, total=len(pending), message=subscriber.email)
        ctx.sleep(params.pause_ms / 1000)
    ctx.log("all sent")
    return {"sent": len(pending)}
