"""Support-staff services behind the admin's actions: bulk actions on sandboxes, databases and projects.

Every action here is a service: it takes a selection and an admin `Actor`, changes statuses only
through `change_status` or the project services, writes one audit entry per target (actor kind
"admin", the staff user, the request address), kicks the reconciler after commit, and returns a
`Report` saying what it did and what it skipped and why. Selections of hundreds of rows are fine:
the reads and the non-status writes are a constant number of queries; status changes cost what
`change_status` costs per row and run one short transaction per project, taking locks project
first, then resources (the order `change_status` and the project services use).
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import Conflict, InvalidState, NotFound
from core.reports import Report
from projects import services as project_services
from projects.models import Project
from projects.services import set_system_variable
from projects.transitions import change_status
from sandboxes.models import RESUMABLE, STOPPABLE, TRANSITIONAL, Database, Resource, ResourceStatus, Sandbox
from userconfig import services as userconfig_services

OPERATOR_MESSAGE = "by an operator"
RESOURCE_MODELS: tuple[Any, ...] = (Sandbox, Database)


# --- helpers --------------------------------------------------------------------------------------


def _ids(selection: QuerySet[Any] | Iterable[Any]) -> list[Any]:
    if isinstance(selection, QuerySet):
        return list(selection.order_by().values_list("pk", flat=True))
    return [getattr(item, "pk", item) for item in selection]


def _lock_projects(project_ids: Iterable[Any]) -> None:
    """Lock projects in primary-key order (ORDER BY pk), so two bulk actions cannot deadlock."""
    ids = list(set(project_ids))
    if ids:
        list(
            Project.all_objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
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


# --- lease and scheduling (no status change) ------------------------------------------------------


def reconcile_now(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """Make transitional rows due now (`next_attempt_at = now`) and kick the reconciler for them.

    A row whose lease is held is made due as well; it runs when that lease ends.
    """
    model = _model(resources, model)
    report = Report(model.resource_kind, "queued for reconcile")
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
            audit.record_many(actor, "admin.reconcile_now", due)
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
    report = Report(model.resource_kind, "released")
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
            audit.record_many(actor, "admin.release_lease", leased)
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
                audit.record_many(
                    actor,
                    f"admin.{action}",
                    moved,
                    lambda row: {"from": row.from_status, "to": row.status},
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
        report=Report(model.resource_kind, "retried"),
        target_for=target_for,
    )


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
        report=Report(model.resource_kind, "stopping"),
        target_for=target_for,
    )


def delete(*, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None) -> Report:
    """Anything but TERMINATING/TERMINATED → TERMINATING (destructive: superusers only in the admin).

    A deleted database also stops being offered to its project's sandboxes (DATABASE_URL removed),
    as `projects.services.database_remove` does.
    """
    model = _model(resources, model)

    def target_for(row: Resource) -> str:
        if row.status in (ResourceStatus.TERMINATING, ResourceStatus.TERMINATED):
            return "!already being deleted"
        return ResourceStatus.TERMINATING

    def after(project_id: Any, moved: list[Resource]) -> None:
        project = Project.all_objects.get(pk=project_id)
        if model is Database:
            for key in sorted({row.url_env_key for row in moved}):  # type: ignore[attr-defined]
                set_system_variable(project=project, key=key, value=None, actor=actor)
        # The owner is told, where they will look: the project itself may vanish with its last resource.
        left = [
            r
            for m in (Sandbox, Database)
            for r in m.objects.filter(project_id=project_id).exclude(
                status__in=(ResourceStatus.TERMINATING, ResourceStatus.TERMINATED)
            )
        ]
        what = "sandbox" if model is Sandbox else "database"
        userconfig_services.notice_add(
            user_id=project.owner_id,
            message=f"An operator deleted the {what} of your project “{project.name}” on "
            f"{timezone.now():%Y-%m-%d at %H:%M} UTC"
            + ("; the project is removed with it." if not left else "; the project itself stays."),
        )

    return _transition(
        model=model,
        ids=_ids(resources),
        actor=actor,
        action="delete",
        report=Report(model.resource_kind, "marked for deletion"),
        target_for=target_for,
        after=after,
    )


# --- owners' kubeconfigs -------------------------------------------------------------------------


def recheck_owner_kubeconfigs(
    *, resources: QuerySet[Any] | Iterable[Any], actor: Actor, model: Any = None
) -> Report:
    model = _model(resources, model)
    owners = model.objects.filter(pk__in=_ids(resources)).values_list("project__owner_id", flat=True)
    report = userconfig_services.recheck_kubeconfigs(user_ids=set(owners), actor=actor)
    report.noun = "owner"
    return report


# --- projects (through the project services) ------------------------------------------------------


def _per_project(projects: QuerySet[Any] | Iterable[Any], service: Any, actor: Actor, did: str) -> Report:
    report = Report("project", did)
    for project in Project.objects.filter(pk__in=_ids(projects)).order_by("pk"):
        try:
            service(project=project, actor=actor)
        except (InvalidState, Conflict) as exc:
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


def projects_forget(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    return _per_project(projects, project_services.project_forget, actor, "forgotten")


def projects_reconcile_now(*, projects: QuerySet[Any] | Iterable[Any], actor: Actor) -> Report:
    ids = _ids(projects)
    report = Report("resource", "queued for reconcile")
    for model in RESOURCE_MODELS:
        part = reconcile_now(resources=model.objects.filter(project_id__in=ids), actor=actor, model=model)
        report.done += part.done
        report.skipped.update(part.skipped)
        report.notes += part.notes
    return report
