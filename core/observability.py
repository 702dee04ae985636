"""What operators watch: the request id and resource id carried by every log line, and the Prometheus
metrics the processes record (prometheus-client; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set,
as in deploy/). Labels hold kinds, statuses, routes and error class names, never a value a user typed.
"""

from __future__ import annotations

import os
import re
import uuid
from contextvars import ContextVar

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# The request that caused this work (HTTP: X-Request-ID or a fresh one; Celery: the task's header).
request_id: ContextVar[str] = ContextVar("request_id", default="")
# The resource a reconcile step is working on ("sandbox:<uuid>").
resource_id: ContextVar[str] = ContextVar("resource_id", default="")

REQUEST_ID_HEADER = "request_id"  # the Celery message header
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def clean_request_id(given: str | None) -> str:
    """A caller's X-Request-ID when it is a plain token, else a fresh one (never echo arbitrary bytes)."""
    if given and _VALID_REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


STEP_SECONDS = Histogram(
    "tenter_reconcile_step_duration_seconds",
    "Time of one reconcile step, by kind, step (the status worked on) and outcome.",
    ["kind", "step", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
)
TIME_IN_STATUS = Histogram(
    "tenter_time_in_status_seconds",
    "Time a resource spent in a status, observed when it leaves it.",
    ["kind", "status"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)
CLAIMS = Counter("tenter_reconcile_claims", "Rows claimed for a reconcile step.", ["kind"])
LEASES_LOST = Counter("tenter_reconcile_leases_lost", "Step results dropped: the lease was lost.", ["kind"])
BACKOFFS = Counter("tenter_reconcile_backoffs", "Failed steps that backed off.", ["kind"])
KUBE_ERRORS = Counter("tenter_kube_errors", "Kubernetes errors seen by steps, by class.", ["kind", "error"])
HTTP_SECONDS = Histogram(
    "tenter_http_request_duration_seconds",
    "HTTP requests by method, route pattern and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def registry() -> CollectorRegistry:
    """What this process exports: every process's metrics in multiprocess mode, else its own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    return DEFAULT_REGISTRY


def exposition() -> str:
    return generate_latest(registry()).decode()
