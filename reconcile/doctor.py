"""`manage.py doctor`: what an operator needs to know in one command. Each check gives one line.

OK and WARN lines leave the exit code at 0; a FAIL line makes it non-zero. Every remote call has a
short timeout, so the doctor answers quickly even when something is down.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Min, Q
from django.utils import timezone

from reconcile.kube.errors import KubeCredentials, KubeError
from reconcile.runner import client_for
from sandboxes.models import TRANSITIONAL, Database, Sandbox
from userconfig.models import CheckStatus, ConfigKey, UserConfig

OK, WARN, FAIL = "OK", "WARN", "FAIL"
WORKER_PING_SECONDS = 2.0
RECONCILE_LAG_LIMIT = timedelta(minutes=5)


@dataclass
class Check:
    name: str
    state: str
    detail: str

    def line(self) -> str:
        return f"{self.state:<4}  {self.name}: {self.detail}"


# -- heartbeats: each beat sweep records when it last ran ------------------------------------------------


def heartbeat_key(task: str) -> str:
    return f"tenter:sweep:{task}:last_run"


def record_heartbeat(task: str) -> None:
    cache.set(heartbeat_key(task), time.time(), timeout=None)


def _schedule() -> dict[str, float]:
    return {entry["task"]: float(entry["schedule"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}


# Sweeps that record a heartbeat (the reconcile sweeps re-enqueue themselves and are measured by lag).
HEARTBEAT_TASKS = (
    "reconcile.sweep_drift",
    "reconcile.sweep_orphans",
    "reconcile.sweep_deadlines",
    "reconcile.sweep_idle",
    "reconcile.check_kubeconfigs",
)


# -- the checks -------------------------------------------------------------------------------------------


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return Check("database", FAIL, f"cannot query PostgreSQL ({exc.__class__.__name__})")
    return Check("database", OK, f"PostgreSQL answers ({connection.settings_dict.get('NAME')})")


def check_redis() -> Check:
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:
        return Check("redis", FAIL, f"the broker does not answer ({exc.__class__.__name__})")
    return Check("redis", OK, "the broker answers PING")


def check_workers() -> Check:
    from celery import current_app

    try:
        replies = current_app.control.ping(timeout=WORKER_PING_SECONDS) or []
    except Exception as exc:
        return Check("workers", FAIL, f"cannot ask the workers ({exc.__class__.__name__})")
    if not replies:
        return Check("workers", FAIL, f"no Celery worker answered a ping within {WORKER_PING_SECONDS:.0f} s")
    names = sorted(name for reply in replies for name in reply)
    return Check("workers", OK, f"{len(names)} worker(s) answered: {', '.join(names)}")


def check_beat_and_sweeps() -> Iterator[Check]:
    schedule = _schedule()
    now = time.time()
    ages = {}
    for task in HEARTBEAT_TASKS:
        last = cache.get(heartbeat_key(task))
        ages[task] = None if last is None else now - float(last)
    seen = [age for age in ages.values() if age is not None]
    if not seen:
        yield Check("beat", FAIL, "no sweep has ever run: is celery beat running?")
    else:
        newest = min(seen)
        limit = 3 * min(schedule.get(t, 60.0) for t in HEARTBEAT_TASKS)
        state = OK if newest <= limit else FAIL
        yield Check("beat", state, f"last sweep ran {newest:.0f} s ago (expected within {limit:.0f} s)")
    for task, age in ages.items():
        period = schedule.get(task, 60.0)
        if age is None:
            yield Check(f"sweep {task}", FAIL, f"never ran (every {period:.0f} s)")
        elif age > 3 * period:
            yield Check(f"sweep {task}", FAIL, f"last ran {age:.0f} s ago, lagging (every {period:.0f} s)")
        else:
            yield Check(f"sweep {task}", OK, f"last ran {age:.0f} s ago (every {period:.0f} s)")
    now_dt = timezone.now()
    for kinds, model in (("sandboxes", Sandbox), ("databases", Database)):
        due = model.objects.filter(status__in=TRANSITIONAL).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now_dt)
        )
        oldest = due.aggregate(oldest=Min("next_attempt_at"))["oldest"]
        lag = (now_dt - oldest) if oldest else timedelta(0)
        state = OK if lag <= RECONCILE_LAG_LIMIT else FAIL
        yield Check(
            f"reconcile {kinds}", state, f"{due.count()} due, oldest waiting {lag.total_seconds():.0f} s"
        )


def check_kubeconfigs() -> Check:
    configs = UserConfig.objects.filter(key=ConfigKey.KUBECONFIG)
    failing = configs.filter(check_status__in=(CheckStatus.FAILED, CheckStatus.UNREACHABLE)).count()
    total = configs.count()
    if failing:
        return Check("kubeconfigs", WARN, f"{failing} of {total} failing their check (see the admin)")
    return Check("kubeconfigs", OK, f"{total} stored, none failing")


def check_clusters() -> Iterator[Check]:
    """Per cluster (one kubeconfig that passed its check per API server): KubeBlocks, the ingress class
    and the storage class Tenter will use."""
    per_server: dict[str, UserConfig] = {}
    for config in UserConfig.objects.filter(key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK).order_by(
        "checked_at"
    ):
        per_server.setdefault(config.server_host, config)
    yield Check(
        "settings",
        OK,
        f"ingress class {settings.INGRESS_CLASS!r}, "
        f"TLS secret {settings.INGRESS_TLS_SECRET or '(controller default)'}, "
        f"server-snippet {'on' if settings.INGRESS_SERVER_SNIPPET else 'off'}, "
        f"{len(settings.INGRESS_ANNOTATIONS)} extra annotation(s), "
        f"sandbox storage {settings.SANDBOX_STORAGE_CLASS or '(cluster default)'}, "
        f"database storage {settings.DATABASE_STORAGE_CLASS or '(cluster default)'}, "
        f"pull secrets {', '.join(settings.RUNTIME_IMAGE_PULL_SECRETS) or '(none)'}",
    )
    if not per_server:
        yield Check("clusters", WARN, "no kubeconfig has passed its check yet: no cluster to look at")
    for server, config in sorted(per_server.items()):
        yield from _check_cluster(server, config)


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except KubeCredentials:
        return Check(name, WARN, "not allowed to look (RBAC): cannot check")
    except KubeError as exc:
        return Check(name, FAIL, f"cannot check: {exc.message or exc.__class__.__name__}")


def _check_cluster(server: str, config: UserConfig) -> Iterator[Check]:
    k = client_for(config).for_step(config.namespace, settings.KUBECONFIG_CHECK_BUDGET_SECONDS)

    def kubeblocks() -> Check:
        version = settings.KUBEBLOCKS_API_VERSION
        if k.serves("Cluster", version):
            return Check(f"{server} KubeBlocks", OK, f"serves Cluster {version}")
        return Check(
            f"{server} KubeBlocks", FAIL, f"does not serve Cluster {version} (KubeBlocks CRDs missing)"
        )

    def ingress_class() -> Check:
        found = k.ingress_class(settings.INGRESS_CLASS)
        if found is None:
            return Check(
                f"{server} ingress class", FAIL, f"IngressClass {settings.INGRESS_CLASS!r} not found"
            )
        controller = (found.get("spec") or {}).get("controller") or "unknown controller"
        return Check(f"{server} ingress class", OK, f"IngressClass {settings.INGRESS_CLASS!r} ({controller})")

    def storage_class() -> Check:
        classes = k.storage_classes()
        named = {str((c.get("metadata") or {}).get("name")) for c in classes}
        default = [
            str((c.get("metadata") or {}).get("name"))
            for c in classes
            if ((c.get("metadata") or {}).get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            )
            == "true"
        ]
        wanted = {settings.SANDBOX_STORAGE_CLASS, settings.DATABASE_STORAGE_CLASS} - {""}
        missing = sorted(wanted - named)
        if missing:
            return Check(f"{server} storage class", FAIL, f"StorageClass {', '.join(missing)} not found")
        if (not settings.SANDBOX_STORAGE_CLASS or not settings.DATABASE_STORAGE_CLASS) and not default:
            return Check(f"{server} storage class", FAIL, "no default StorageClass, and none configured")
        uses = ", ".join(sorted(wanted)) or f"the default, {default[0]}"
        return Check(f"{server} storage class", OK, f"will use {uses}")

    yield _guard(f"{server} KubeBlocks", kubeblocks)
    yield _guard(f"{server} ingress class", ingress_class)
    yield _guard(f"{server} storage class", storage_class)


def run_checks() -> list[Check]:
    checks = [check_database(), check_redis()]
    redis_ok = checks[-1].state == OK
    checks.append(check_workers() if redis_ok else Check("workers", FAIL, "cannot ask them: Redis is down"))
    if redis_ok:
        checks += list(check_beat_and_sweeps())
    else:
        checks.append(Check("beat", FAIL, "cannot read the sweeps' heartbeats: Redis is down"))
    checks.append(check_kubeconfigs())
    checks += list(check_clusters())
    return checks
