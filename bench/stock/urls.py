"""The stock project's one HTTP endpoint: start a job (celery-progress's "kick off a task" view)."""

import json
import uuid

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bench.stock.tasks import count


@csrf_exempt
def start_job(request):
    """POST {"steps", "interval_ms", "id"?} → 201 {"id"}: queue a counting task (the client may pick the id)."""
    if request.method != "POST":
        return JsonResponse({"detail": "POST only"}, status=405)
    body = json.loads(request.body or b"{}")
    job_id = str(body.get("id") or uuid.uuid4())
    count.delay(job_id, int(body.get("steps", 100)), int(body.get("interval_ms", 0)))
    return JsonResponse({"id": job_id}, status=201)


urlpatterns = [path("api/jobs/", start_job)]
