"""Prometheus metrics. Gauges computed at scrape time from the database and the broker (so every web
process agrees): counts by status, reconcile lag (age of the oldest due transitional row), rows past
their deadline, rows waiting on a lease, kubeconfig check results and the task queue's depth. Then what
the processes recorded (core/observability.py): step durations, time in status, claims, lost leases,
backoffs, Kubernetes errors by class and HTTP requests; with PROMETHEUS_MULTIPROC_DIR, every process of
this pod. Nothing secret is exported.
"""

import hmac

import redis
from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from core import observability
from projects import pools
from projects.models import Project
from sandboxes.models import TRANSITIONAL, Database, OrphanObject, Sandbox, lease_held_q, past_deadline_q
from userconfig.models import ConfigKey, UserConfig


def _line(name: str, value: float, **labels: str) -> str:
    rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{rendered}}} {value}" if labels else f"{name} {value}"


def render() -> str:
    now = timezone.now()
    lines = [
        "# HELP tenter_resources Sandboxes and databases by status.",
        "# TYPE tenter_resources gauge",
    ]
    lag_lines, deadline_lines, lease_lines = [], [], []
    for kind, model in (("sandbox", Sandbox), ("database", Database)):
        for row in model.objects.values("status").annotate(n=Count("id")).order_by("status"):
            lines.append(_line("tenter_resources", row["n"], kind=kind, status=row["status"]))
        due = model.objects.filter(status__in=TRANSITIONAL).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
        stats = model.objects.aggregate(
            oldest_due=Min("status_changed_at", filter=Q(pk__in=due.values("pk"))),
            past_deadline=Count("id", filter=past_deadline_q(now)),
            leased=Count("id", filter=lease_held_q(now)),
        )
        oldest = stats["oldest_due"]
        lag_lines.append(
            _line("tenter_reconcile_lag_seconds", (now - oldest).total_seconds() if oldest else 0, kind=kind)
        )
        deadline_lines.append(_line("tenter_resources_past_deadline", stats["past_deadline"], kind=kind))
        lease_lines.append(_line("tenter_leases_held", stats["leased"], kind=kind))
    lines += [
        "# HELP tenter_reconcile_lag_seconds Time in state of the oldest due transitional row.",
        "# TYPE tenter_reconcile_lag_seconds gauge",
        *lag_lines,
        "# HELP tenter_resources_past_deadline Transitional rows older than their deadline.",
        "# TYPE tenter_resources_past_deadline gauge",
        *deadline_lines,
        "# HELP tenter_leases_held Rows currently leased by a worker.",
        "# TYPE tenter_leases_held gauge",
        *lease_lines,
        "# HELP tenter_projects Projects by aggregated status.",
        "# TYPE tenter_projects gauge",
    ]
    for row in Project.objects.values("status").annotate(n=Count("id")).order_by("status"):
        lines.append(_line("tenter_projects", row["n"], status=row["status"]))
    lines += [
        "# HELP tenter_kubeconfigs Stored kubeconfigs by check result.",
        "# TYPE tenter_kubeconfigs gauge",
    ]
    checks = (
        UserConfig.objects.filter(key=ConfigKey.KUBECONFIG).values("check_status").annotate(n=Count("id"))
    )
    for check in checks.order_by("check_status"):
        lines.append(_line("tenter_kubeconfigs", check["n"], check_status=check["check_status"]))
    orphans = OrphanObject.objects.aggregate(
        reported=Count("id", filter=Q(deleted_at=None)), deleted=Count("id", filter=~Q(deleted_at=None))
    )
    lines += [
        "# HELP tenter_orphan_objects Objects of a user with no row: reported (still there) or deleted.",
        "# TYPE tenter_orphan_objects gauge",
        _line("tenter_orphan_objects", orphans["reported"], state="reported"),
        _line("tenter_orphan_objects", orphans["deleted"], state="deleted"),
    ]
    lines += _pool_lines()
    lines += [
        "# HELP tenter_queue_depth Tasks waiting in the broker queue (-1: the broker did not answer).",
        "# TYPE tenter_queue_depth gauge",
        _line("tenter_queue_depth", _queue_depth(), queue=settings.CELERY_TASK_DEFAULT_QUEUE),
    ]
    return "\n".join(lines) + "\n" + observability.exposition()


def _pool_lines() -> list[str]:
    """Warm pools: idle members per policy, and the creates each served (claims) or found empty (misses)."""
    policies = list(pools.with_idle().order_by("pk"))
    out: dict[str, list[str]] = {"idle": [], "claims": [], "misses": []}
    for policy in policies:
        labels = {"policy": str(policy.pk), "image": policy.image, "size": policy.size}
        out["idle"].append(_line("tenter_pool_idle", policy.idle_now, **labels))
        out["claims"].append(_line("tenter_pool_claims_total", policy.claims, **labels))
        out["misses"].append(_line("tenter_pool_misses_total", policy.misses, **labels))
    return [
        "# HELP tenter_pool_idle Idle RUNNING warm pool sandboxes, per pool policy.",
        "# TYPE tenter_pool_idle gauge",
        *out["idle"],
        "# HELP tenter_pool_claims_total Project creates served by a warm pool sandbox, per pool policy.",
        "# TYPE tenter_pool_claims_total counter",
        *out["claims"],
        "# HELP tenter_pool_misses_total Matching project creates that found the pool empty (cold start).",
        "# TYPE tenter_pool_misses_total counter",
        *out["misses"],
    ]


def _queue_depth() -> int:
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
        finally:
            client.close()
    except redis.RedisError:
        return -1


def may_scrape(request: HttpRequest) -> bool:
    """Public only when METRICS_PUBLIC is on and no token is set; otherwise the bearer token or a
    signed-in staff user."""
    token = settings.METRICS_TOKEN
    if settings.METRICS_PUBLIC and not token:
        return True
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(render(), content_type="text/plain; version=0.0.4")
