"""Operator actions behind the Django admin, and the operations overview it shows.

Every action here is a service: it takes a selection and an admin `Actor`, changes statuses only
through `change_status` or the project services, writes one AuditEntry per target (actor kind
"admin", the staff user, the request address), kicks the reconciler after commit, and returns a
`Report` saying what it did and what it skipped and why. Selections of hundreds of rows are fine:
the reads and the non-status writes are a constant number of queries; status changes cost what
`change_status` costs per row and run one short transaction per project, taking locks project
first, then resources (the order `change_status` and the project services use).
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from core import kick as kicks
from core.audit import Actor, actor_for
from core.errors import InvalidState, NotFound
from core.models import AuditEntry
from projects import services as project_services
from projects.models import Project
from projects.services import RESUMABLE, set_system_variable
from sandboxes.models import TRANSITIONAL, Database, Resource, ResourceStatus, Sandbox
from sandboxes.transitions import change_status, kind_of
from userconfig import services as userconfig_services
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig

OPERATOR_MESSAGE = "by an operator"
KUBECONFIG_FAILING = [CheckStatus.FAILED, CheckStatus.UNREACHABLE]
RESOURCE_MODELS: tuple[Any, ...] = (Sandbox, Database)


def admin_actor(request: HttpRequest) -> Actor:
    """The staff user behind an admin request, with the same client address rule as the API."""
    return actor_for(request, kind="admin")


def plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun + 'es' if noun.endswith('x') else noun + 's'}"


@dataclass
class Report:
    """What an action did: how many targets it acted on, and the others grouped by why they were skipped."""

    noun: str
    did: str
    done: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def message(self) -> str:
        text = f"{plural(len(self.done), self.noun)} {self.did}"
        if self.skipped:
            total = sum(self.skipped.values())
            if len(self.skipped) == 1:
                reasons = next(iter(self.skipped))
            else:
                reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            text += f"; {total} skipped ({reasons})"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text + "."


# --- helpers --------------------------------------------------------------------------------------


def _ids(selection: QuerySet[Any] | Iterable[Any]) -> list[Any]:
    if isinstance(selection, QuerySet):
        return list(selection.order_by().values_list("pk", flat=True))
    return [getattr(item, "pk", item) for item in selection]


def _audit_many(actor: Actor, action: str, targets: Sequence[Any], **details: Any) -> None:
    """One AuditEntry per target in a single INSERT (what `audit.record` writes, for many targets)."""
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=actor.user,
            actor_kind=actor.kind,
            action=action,
            target_type=target._meta.model_name or "",
            target_id=str(target.pk),
            target_repr=str(target)[:200],
            ip_address=actor.ip,
            details=details,
        )
        for target in targets
    )


def _lock_projects(project_ids: Iterable[Any]) -> None:
    """Lock projects in primary-key order (ORDER BY pk), so two bulk actions cannot deadlock."""
    ids = list(set(project_ids))
    if ids:
        list(
            Project.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True)
        )


def _lock_resources(model: Any, ids: Sequence[Any]) -> list[Resource]:
    """Lock the rows' projects (in id order), then the rows (in id order). Inside a transaction."""
    project_ids = model.objects.filter(pk__in=ids).values_list("project_id", flat=True).distinct()
    _lock_projects(list(project_ids))
    rows = model.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk")
    if model is Database:
        rows = rows.defer("password")
    return list(rows)


def _model(resources: Any, model: Any) -> Any:
    """The model of a selection: given explicitly, or the queryset's."""
    return model or resources.model


def _noun(model: type[Resource]) -> str:
    return kind_of(model)


# --- lease and scheduling (no status change) ------------------------------------------------------


def reconcile_now(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """Make transitional rows due now (`next_attempt_at = now`) and kick the reconciler for them.

    A row whose lease is held is made due as well; it runs when that lease ends.
    """
    model = _model(resources, model)
    report = Report(_noun(model), "queued for reconcile")
    ids = _ids(resources)
    now = timezone.now()
    with transaction.atomic():
        rows = _lock_resources(model, ids)
        due = [r for r in rows if r.status in TRANSITIONAL]
        for row in rows:
            if row.status not in TRANSITIONAL:
                report.skip("not transitional")
        for _ in range(len(ids) - len(rows)):
            report.skip("gone")
        if due:
            model.objects.filter(pk__in=[r.pk for r in due]).update(next_attempt_at=now, updated_at=now)
            _audit_many(actor, "admin.reconcile_now", due)
            for row in due:
                kicks.kick(row)
        leased = sum(1 for r in due if r.locked_until and r.locked_until > now)
        if leased:
            report.notes.append(f"{leased} still leased, will run when the lease ends")
        report.done = [str(r.pk) for r in due]
    return report


def release_lease(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """Clear `locked_until` and `lease_token` so the next sweep can claim the row at once.

    A worker still acting under the old lease can no longer record its result (its token is gone).
    Transitional rows are kicked.
    """
    model = _model(resources, model)
    report = Report(_noun(model), "released")
    ids = _ids(resources)
    now = timezone.now()
    with transaction.atomic():
        rows = _lock_resources(model, ids)
        for _ in range(len(ids) - len(rows)):
            report.skip("gone")
        leased = [r for r in rows if r.locked_until is not None or r.lease_token is not None]
        for _ in range(len(rows) - len(leased)):
            report.skip("no lease")
        if leased:
            model.objects.filter(pk__in=[r.pk for r in leased]).update(
                locked_until=None, lease_token=None, updated_at=now
            )
            _audit_many(actor, "admin.release_lease", leased)
            for row in leased:
                if row.status in TRANSITIONAL:
                    kicks.kick(row)
        held = sum(1 for r in leased if r.locked_until and r.locked_until > now)
        if held:
            report.notes.append(f"{held} held by a live lease; that worker's result will be dropped")
        report.done = [str(r.pk) for r in leased]
    return report


# --- status changes (through change_status) -------------------------------------------------------


def _by_project(model: Any, ids: Sequence[Any]) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = defaultdict(list)
    for pk, project_id in model.objects.filter(pk__in=ids).values_list("pk", "project_id"):
        groups[project_id].append(pk)
    return groups


def _transition(
    *,
    model: Any,
    ids: Sequence[Any],
    actor: Actor,
    action: str,
    report: Report,
    target_for: Any,
    after: Any = None,
) -> Report:
    """Per project, in one short transaction: lock project then resources, move each qualifying row
    (`target_for(row)` returns the target status or a skip reason prefixed with '!')."""
    groups = _by_project(model, ids)
    for _ in range(len(ids) - sum(len(v) for v in groups.values())):
        report.skip("gone")
    for project_id in sorted(groups, key=str):
        with transaction.atomic():
            rows = _lock_resources(model, groups[project_id])
            for _ in range(len(groups[project_id]) - len(rows)):
                report.skip("gone")
            moved = []
            for row in rows:
                target = target_for(row)
                if target.startswith("!"):
                    report.skip(target[1:])
                    continue
                from_status = row.status
                change_status(
                    row,
                    target,
                    actor=actor,
                    reason=action,
                    message=f"{action.capitalize()} requested {OPERATOR_MESSAGE}.",
                    fields={"failed_status": ""},
                )
                row.from_status = from_status  # type: ignore[attr-defined]
                moved.append(row)
                kicks.kick(row)
            if moved:
                if after is not None:
                    after(project_id, moved)
                AuditEntry.objects.bulk_create(
                    AuditEntry(
                        actor=actor.user,
                        actor_kind=actor.kind,
                        action=f"admin.{action}",
                        target_type=row._meta.model_name or "",
                        target_id=str(row.pk),
                        target_repr=str(row)[:200],
                        ip_address=actor.ip,
                        details={"from": row.from_status, "to": row.status},  # type: ignore[attr-defined]
                    )
                    for row in moved
                )
            report.done += [str(r.pk) for r in moved]
    return report


def retry(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """ERROR → the status it failed in when resumable (CREATING/STARTING/UPDATING), else STARTING."""
    model = _model(resources, model)

    def target_for(row: Resource) -> str:
        if row.status != ResourceStatus.ERROR:
            return "!not in ERROR"
        return row.failed_status if row.failed_status in RESUMABLE else ResourceStatus.STARTING

    return _transition(
        model=model,
        ids=_ids(resources),
        actor=actor,
        action="retry",
        report=Report(_noun(model), "retried"),
        target_for=target_for,
    )


STOPPABLE = {ResourceStatus.RUNNING, ResourceStatus.STARTING, ResourceStatus.ERROR}


def stop(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """RUNNING, STARTING or ERROR → STOPPING (destructive: superusers only in the admin)."""
    model = _model(resources, model)

    def target_for(row: Resource) -> str:
        if row.status not in STOPPABLE:
            return f"!{row.status} cannot be stopped"
        return ResourceStatus.STOPPING

    return _transition(
        model=model,
        ids=_ids(resources),
        actor=actor,
        action="stop",
        report=Report(_noun(model), "stopping"),
        target_for=target_for,
    )


def delete(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """Anything but TERMINATING/TERMINATED → TERMINATING (destructive: superusers only in the admin).

    A deleted database also stops being offered to its project's sandboxes (DATABASE_URL removed),
    as `sandboxes.services.database_remove` does.
    """
    model = _model(resources, model)

    def target_for(row: Resource) -> str:
        if row.status in (ResourceStatus.TERMINATING, ResourceStatus.TERMINATED):
            return "!already being deleted"
        return ResourceStatus.TERMINATING

    def after(project_id: Any, moved: list[Resource]) -> None:
        if model is Database:
            project = Project.objects.get(pk=project_id)
            set_system_variable(project=project, key="DATABASE_URL", value=None, actor=actor)

    return _transition(
        model=model,
        ids=_ids(resources),
        actor=actor,
        action="delete",
        report=Report(_noun(model), "marked for deletion"),
        target_for=target_for,
        after=after,
    )


# --- kubeconfig -----------------------------------------------------------------------------------


def recheck_kubeconfigs(*, user_ids: Iterable[Any], actor: Actor) -> Report:
    """Reset each user's kubeconfig check to PENDING and queue the cluster check again."""
    report = Report("user", "queued for a kubeconfig re-check")
    ids = sorted(set(user_ids))
    users = {u.pk: u for u in User.objects.filter(pk__in=ids)}
    for user_id in ids:
        user = users.get(user_id)
        if user is None:
            report.skip("gone")
            continue
        try:
            userconfig_services.kubeconfig_recheck(user=user, actor=actor)
        except NotFound:
            report.skip("no kubeconfig")
            continue
        report.done.append(str(user_id))
    return report


def revoke_api_tokens(*, user_ids: Iterable[Any], actor: Actor) -> Report:
    """Delete the users' REST API tokens (DRF authtoken); the key itself is never shown or recorded."""
    from rest_framework.authtoken.models import Token

    report = Report("user", "had their API token revoked")
    ids = sorted(set(user_ids))
    with transaction.atomic():
        tokens = list(Token.objects.select_related("user").filter(user_id__in=ids))
        holders = [t.user for t in tokens]
        for _ in range(len(ids) - len(holders)):
            report.skip("no token")
        if holders:
            Token.objects.filter(user_id__in=[u.pk for u in holders]).delete()
            _audit_many(actor, "admin.revoke_api_token", holders)
        report.done = [str(u.pk) for u in holders]
    return report


def recheck_owner_kubeconfigs(
    *, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None
) -> Report:
    model = _model(resources, model)
    owners = model.objects.filter(pk__in=_ids(resources)).values_list("project__owner_id", flat=True)
    report = recheck_kubeconfigs(user_ids=set(owners), actor=actor)
    report.noun = "owner"
    return report


# --- projects (through the project services) ------------------------------------------------------


def _per_project(projects: QuerySet[Any] | Iterable[Any], service: Any, actor: Actor, did: str) -> Report:
    report = Report("project", did)
    for project in Project.objects.filter(pk__in=_ids(projects)).order_by("pk"):
        try:
            service(project=project, actor=actor)
        except InvalidState as exc:
            report.skip(exc.message.rstrip("."))
            continue
        except NotFound:
            report.skip("gone")
            continue
        report.done.append(str(project.pk))
    return report


def projects_retry(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    return _per_project(projects, project_services.project_retry, actor, "retried")


def projects_stop(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    return _per_project(projects, project_services.project_stop, actor, "stopping")


def projects_delete(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    return _per_project(projects, project_services.project_delete, actor, "marked for deletion")


def projects_reconcile_now(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    ids = _ids(projects)
    report = Report("resource", "queued for reconcile")
    for model in RESOURCE_MODELS:
        part = reconcile_now(resources=model.objects.filter(project_id__in=ids), actor=actor, model=model)
        report.done += part.done
        report.skipped.update(part.skipped)
        report.notes += part.notes
    return report


# --- the operations overview (a read) -------------------------------------------------------------


def deadline_q(now: datetime | None = None, prefix: str = "") -> Q:
    """Rows whose current status has a deadline (settings.STATUS_DEADLINES) that has passed."""
    now = now or timezone.now()
    q = Q(pk__in=[])
    for status, limit in settings.STATUS_DEADLINES.items():
        q |= Q(**{f"{prefix}status": status, f"{prefix}status_changed_at__lt": now - limit})
    return q


def lease_held_q(now: datetime | None = None) -> Q:
    return Q(locked_until__gt=now or timezone.now())


def overview(*, now: datetime | None = None, stuck_limit: int = 50, error_limit: int = 20) -> dict[str, Any]:
    """Counts, stuck rows, reconcile lag and recent errors, in a constant number of queries."""
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    due = (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)) & (
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )
    kinds = []
    for model in RESOURCE_MODELS:
        base = model.objects.all()
        if model is Database:
            base = base.defer("password")
        counts = dict(base.order_by().values_list("status").annotate(n=Count("pk")))
        lag = base.filter(status__in=TRANSITIONAL).aggregate(
            oldest=Min("status_changed_at"),
            oldest_due=Min(Coalesce("next_attempt_at", "status_changed_at"), filter=due),
            leased=Count("pk", filter=lease_held_q(now)),
            past_deadline=Count("pk", filter=deadline_q(now)),
        )
        stuck = list(
            base.filter(deadline_q(now))
            .select_related("project", "project__owner")
            .order_by("status_changed_at")[:stuck_limit]
        )
        for row in stuck:
            row.age = now - row.status_changed_at  # type: ignore[attr-defined]
            row.deadline = settings.STATUS_DEADLINES.get(row.status)  # type: ignore[attr-defined]
        errors = list(
            base.filter(status=ResourceStatus.ERROR, status_changed_at__gte=since)
            .order_by()
            .values("failed_status", "last_error")
            .annotate(n=Count("pk"), latest=Max("status_changed_at"))
            .order_by("-n", "-latest")[:error_limit]
        )
        kinds.append(
            {
                "kind": kind_of(model),
                "model": model,
                "counts": [(s, counts.get(s, 0)) for s in ResourceStatus.values],
                "total": sum(counts.values()),
                "oldest_age": now - lag["oldest"] if lag["oldest"] else None,
                "oldest_due_age": now - lag["oldest_due"] if lag["oldest_due"] else None,
                "leased": lag["leased"],
                "past_deadline": lag["past_deadline"],
                "stuck": stuck,
                "errors": errors,
            }
        )
    project_counts = dict(Project.objects.order_by().values_list("status").annotate(n=Count("pk")))
    kubeconfig_counts = dict(
        UserConfig.objects.filter(key=ConfigKey.KUBECONFIG)
        .order_by()
        .values_list("check_status")
        .annotate(n=Count("pk"))
    )
    return {
        "now": now,
        "kinds": kinds,
        "project_counts": sorted(project_counts.items()),
        "project_total": sum(project_counts.values()),
        "kubeconfig_counts": [(s.label, s.value, kubeconfig_counts.get(s.value, 0)) for s in CheckStatus],
        "deadlines": settings.STATUS_DEADLINES,
    }


__all__ = [
    "Report",
    "admin_actor",
    "deadline_q",
    "delete",
    "lease_held_q",
    "overview",
    "projects_delete",
    "projects_reconcile_now",
    "projects_retry",
    "projects_stop",
    "recheck_kubeconfigs",
    "recheck_owner_kubeconfigs",
    "reconcile_now",
    "release_lease",
    "retry",
    "revoke_api_tokens",
    "stop",
]
