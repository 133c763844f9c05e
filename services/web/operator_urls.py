"""The web tier's operator endpoints, /healthz, /readyz and /metrics, as a URLconf (docs/operations.md).

Include it at the root, `path("", include("jobcast.web.operator_urls"))`; with
OperatorEndpointsMiddleware they answer whatever the Host header says (probes, Prometheus).
"""

from django.urls import path

from jobcast.web import health

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", health.metrics),
]
