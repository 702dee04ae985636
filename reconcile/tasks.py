"""Thin Celery entry points. Ids only as arguments; no results; time limits from settings."""

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_shutting_down
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core import kick as kicks
from core.audit import RECONCILER
from projects import pools
from projects.selectors import idle_candidates
from projects.services import stop_if_idle
from reconcile import checks, doctor, engine, project_tasks, runner
from sandboxes.models import Database, Sandbox, past_deadline_q
from userconfig.models import CheckStatus, ConfigKey, UserConfig

logger = logging.getLogger(__name__)


@worker_init.connect
def _worker_starts(**_: Any) -> None:
    engine.clear_shutdown()


@worker_shutting_down.connect
def _worker_stops(**_: Any) -> None:
    """SIGTERM (warm shutdown): running steps finish, claimed rows not yet reached are released."""
    engine.begin_shutdown()


@shared_task(name="reconcile.sandbox", ignore_result=True)
def reconcile_sandbox_task(sandbox_id: str = "") -> None:
    """A kick: claim a batch of due sandboxes, the kicked one (if any) first."""
    kicks.picked_up("reconcile.sandbox")
    runner.reconcile(Sandbox, prefer=[sandbox_id] if sandbox_id else None)


@shared_task(name="reconcile.database", ignore_result=True)
def reconcile_database_task(database_id: str = "") -> None:
    kicks.picked_up("reconcile.database")
    runner.reconcile(Database, prefer=[database_id] if database_id else None)


@shared_task(name="reconcile.sweep_sandboxes", ignore_result=True)
def sweep_sandboxes_task() -> None:
    if runner.sweep(Sandbox):
        sweep_sandboxes_task.apply_async(expires=30)  # more work remains: keep going right away


@shared_task(name="reconcile.sweep_databases", ignore_result=True)
def sweep_databases_task() -> None:
    if runner.sweep(Database):
        sweep_databases_task.apply_async(expires=30)


# A task's script may run for TASK_EXEC_TIMEOUT_SECONDS: these tasks get the task lease as time limit.
_TASK_LIMITS = {
    "soft_time_limit": settings.TASK_LEASE_SECONDS,
    "time_limit": settings.TASK_LEASE_SECONDS + 30,
}


@shared_task(name="reconcile.projecttask", ignore_result=True, **_TASK_LIMITS)
def reconcile_project_task_task(task_id: str) -> None:
    project_tasks.reconcile(ids=[task_id])


@shared_task(name="reconcile.sweep_project_tasks", ignore_result=True, **_TASK_LIMITS)
def sweep_project_tasks_task() -> None:
    if project_tasks.sweep():
        sweep_project_tasks_task.apply_async(expires=30)


CHECK_RETRIES = 3


@shared_task(name="reconcile.check_kubeconfig", ignore_result=True, bind=True, max_retries=CHECK_RETRIES)
def check_kubeconfig_task(self: Any, user_id: str, scheduled: bool = False) -> None:
    """One check of a user's kubeconfig, at most one per user per KUBECONFIG_CHECK_INTERVAL_SECONDS:
    inside the window, one later check is scheduled for when it ends (however many saves asked)."""
    if scheduled:
        checks.release_later_check(user_id)
    if self.request.retries == 0:  # the retries below belong to a check that took its slot
        wait = checks.take_check_slot(user_id)
        if wait > 0:
            if checks.schedule_later_check(user_id, wait):
                check_kubeconfig_task.apply_async((user_id,), {"scheduled": True}, countdown=wait + 0.1)
            return
    last_try = self.request.retries >= CHECK_RETRIES
    status, _ = checks.check_kubeconfig(int(user_id), record_unreachable=last_try)
    if status == CheckStatus.UNREACHABLE and not last_try:
        raise self.retry(countdown=2 * (self.request.retries + 1))


@shared_task(name="reconcile.check_kubeconfigs", ignore_result=True)
def check_kubeconfigs_task() -> None:
    """Re-check kubeconfigs (bounded batch): healthy ones every KUBECONFIG_CHECK_MINUTES, failing ones
    every minute so a fixed cluster or RBAC rule is noticed soon."""
    doctor.record_heartbeat("reconcile.check_kubeconfigs")
    now = timezone.now()
    stale = now - timedelta(minutes=settings.KUBECONFIG_CHECK_MINUTES)
    failing_and_stale = ~Q(check_status=CheckStatus.OK) & Q(checked_at__lt=now - timedelta(minutes=1))
    user_ids = (
        UserConfig.objects.filter(key=ConfigKey.KUBECONFIG)
        .filter(Q(checked_at__isnull=True) | Q(checked_at__lt=stale) | failing_and_stale)
        .order_by("checked_at")
        .values_list("user_id", flat=True)[:50]
    )
    for user_id in user_ids:
        check_kubeconfig_task.delay(str(user_id))


@shared_task(name="reconcile.sweep_deadlines", ignore_result=True)
def sweep_deadlines_task() -> None:
    """Rows past their deadline are made due now; their next step moves them to ERROR with the reason."""
    doctor.record_heartbeat("reconcile.sweep_deadlines")
    now = timezone.now()
    for model in (Sandbox, Database):
        model.objects.filter(past_deadline_q(now), next_attempt_at__gt=now).update(next_attempt_at=now)


@shared_task(name="reconcile.sweep_drift", ignore_result=True)
def sweep_drift_task() -> None:
    """Continuous verification: one bounded round over stable rows (reconcile/verify.py)."""
    doctor.record_heartbeat("reconcile.sweep_drift")
    from reconcile import verify

    result = verify.verify_round()
    if result.drifted or result.degraded or result.recovered or result.failed:
        logger.info(
            "verification: %s checked, %s drifted, %s degraded, %s recovered, %s failed",
            result.checked,
            len(result.drifted),
            result.degraded,
            result.recovered,
            result.failed,
        )


ORPHAN_SWEEP_USERS = 100


@shared_task(name="reconcile.sweep_orphans", ignore_result=True)
def sweep_orphans_task() -> None:
    """Objects labelled as Tenter's with no row: reported, deleted after the grace period (if set).

    In the namespaces of users whose kubeconfig check passes, a random batch each run, so that every
    namespace comes up over time however many users there are.
    """
    doctor.record_heartbeat("reconcile.sweep_orphans")
    from reconcile import drift

    configs = UserConfig.objects.filter(key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK)
    for config in configs.order_by("?")[:ORPHAN_SWEEP_USERS]:
        try:
            drift.find_orphans(config)
        except Exception as exc:  # one user's cluster must not stop the others
            logger.warning("orphan sweep failed for user %s: %s", config.user_id, exc.__class__.__name__)


IDLE_SWEEP_PROJECTS = 100


@shared_task(name="reconcile.sweep_idle", ignore_result=True)
def sweep_idle_task() -> None:
    """Stop running projects idle past their timeout (settings.IDLE_STOP_MINUTES, or the project's own);
    each is decided again under its lock, so activity or a user's action in the meantime wins."""
    doctor.record_heartbeat("reconcile.sweep_idle")
    for project_id in idle_candidates(limit=IDLE_SWEEP_PROJECTS):
        if stop_if_idle(project_id=project_id, actor=RECONCILER):
            logger.info("project %s stopped after its idle timeout", project_id)


@shared_task(name="reconcile.refill_pools", ignore_result=True)
def refill_pools_task() -> None:
    """Keep every opted-in user's warm pools at their policy's target (projects/pools.py)."""
    created = pools.refill_all(actor=RECONCILER)
    if created:
        logger.info("warm pools: %d sandboxes requested", created)


@shared_task(name="reconcile.diagnostics", ignore_result=True)
def diagnostics_task(project_id: str) -> None:
    """Fetch a project's diagnostics (objects, pods, events, log tails) into the cache."""
    from reconcile import diagnostics

    diagnostics.collect(project_id)
