"""Status changes of sandboxes and databases.

Every status change goes through `change_status`: it writes the row, appends a ResourceEvent and
re-aggregates the project status, all in one transaction. Locks are always taken project first,
then resource, so user actions and the reconciler cannot deadlock each other.
"""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.db.models import Case, F, Field, Value, When
from django.utils import timezone

from core import audit
from core.audit import Actor
from projects.models import Project, ProjectStatus
from projects.status import aggregate
from projects.task_services import wake_tasks
from sandboxes.models import Database, Resource, ResourceEvent, ResourceStatus, Sandbox

logger = logging.getLogger(__name__)


def lock_project(project_id: uuid.UUID) -> Project | None:
    return Project.all_objects.select_for_update().filter(pk=project_id).first()


def refresh_project_status(project_id: uuid.UUID, project: Project | None = None) -> str | None:
    """Recompute the project's status from its resources; delete the project when none are left.

    Must run inside the transaction that changed a resource, after `lock_project` (pass the locked
    row as `project` to save a query). Returns the new status, or None when the project is gone.
    """
    if project is None:
        project = Project.all_objects.filter(pk=project_id).only("id", "status").first()
        if project is None:
            return None
    return refresh_project_statuses([project])[project_id]


def refresh_project_statuses(projects: list[Project]) -> dict[uuid.UUID, str | None]:
    """`refresh_project_status` for locked projects, in a constant number of statements: their resources'
    statuses in one query, the projects whose status changed in one UPDATE, the emptied ones deleted."""
    if not projects:
        return {}
    ids = [p.pk for p in projects]
    statuses: dict[uuid.UUID, list[str]] = defaultdict(list)
    sandboxes = Sandbox.objects.filter(project_id__in=ids).values_list("project_id", "status")
    databases = Database.objects.filter(project_id__in=ids).values_list("project_id", "status")
    for project_id, status in sandboxes.union(databases, all=True):
        statuses[project_id].append(status)
    result: dict[uuid.UUID, str | None] = {}
    changed: list[Project] = []
    gone: list[uuid.UUID] = []
    for project in projects:
        new_status = aggregate(statuses[project.pk])
        if new_status == ProjectStatus.TERMINATED:
            gone.append(project.pk)
            result[project.pk] = None
            continue
        if new_status != project.status:
            project.status = new_status
            changed.append(project)
        result[project.pk] = new_status
    if gone:
        Project.all_objects.filter(pk__in=gone).delete()
    if changed:
        now = timezone.now()
        Project.all_objects.filter(pk__in=[p.pk for p in changed]).update(
            status=_per_row(Project, "status", [(p.pk, p.status) for p in changed], len(changed)),
            status_changed_at=now,
            updated_at=now,
        )
    return result


def add_event(
    resource: Resource,
    *,
    from_status: str,
    to_status: str,
    actor: Actor,
    reason: str = "",
    message: str = "",
    project_name: str = "",
) -> ResourceEvent:
    event = _event(
        resource,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
        message=message,
        project_name=project_name,
    )
    event.save(force_insert=True)
    return event


def _event(
    resource: Resource,
    *,
    from_status: str,
    to_status: str,
    actor: Actor,
    reason: str,
    message: str,
    project_name: str,
) -> ResourceEvent:
    return ResourceEvent(
        project_id=resource.project_id,  # type: ignore[attr-defined]
        project_name=project_name,
        resource_kind=resource.resource_kind,
        resource_id=resource.pk,
        resource_name=resource.name,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        message=message[:2000],
        actor=actor.kind,
        actor_user=actor.user,
    )


def status_values(
    from_status: str,
    to_status: str,
    *,
    message: str,
    now: datetime,
    lease_token: uuid.UUID | None,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns a move from `from_status` to `to_status` writes (besides the caller's `fields`)."""
    values: dict[str, Any] = {
        "status": to_status,
        "status_reason": message,
        "updated_at": now,
        **(fields or {}),
    }
    if to_status != from_status:
        values.update(
            status_changed_at=now,
            attempts=0,
            next_attempt_at=None,
            waiting_since=None,
            paused=timedelta(0),
            # health and the verification baseline belong to the status they were seen in
            degraded_reason="",
            degraded_since=None,
            observed_objects={},
        )
    if to_status == ResourceStatus.ERROR:
        values.setdefault("failed_status", from_status)
        values["last_error"] = message
    if lease_token is None:
        values["lease_token"] = None  # invalidate any lease in flight
    else:
        values.update(lease_token=None, locked_until=None)  # release our own lease
    return values


def change_status(
    resource: Resource,
    to_status: str,
    *,
    actor: Actor,
    reason: str = "",
    message: str = "",
    lease_token: uuid.UUID | None = None,
    fields: dict[str, Any] | None = None,
) -> bool:
    """Move `resource` to `to_status` (TERMINATED deletes the row), with its event and the project status.

    With `lease_token`, the write only happens while that lease is still held; False means the
    lease was lost and nothing was written. `fields` are extra columns to write in the same UPDATE.
    User-initiated changes pass no token and invalidate any lease in flight, so a worker that is
    still acting on the old intent cannot overwrite the new one.
    """
    model = type(resource)
    project_id = resource.project_id  # type: ignore[attr-defined]
    from_status = resource.status
    now = timezone.now()
    with transaction.atomic():
        project = lock_project(project_id)
        rows = model._default_manager.filter(pk=resource.pk)
        if lease_token is not None:
            rows = rows.filter(lease_token=lease_token)
        if to_status == ResourceStatus.TERMINATED:
            written = rows.delete()[0] > 0
        else:
            values = status_values(
                from_status, to_status, message=message, now=now, lease_token=lease_token, fields=fields
            )
            written = rows.update(**values) > 0
        if not written:
            return False
        if to_status != from_status:
            add_event(
                resource,
                from_status=from_status,
                to_status=to_status,
                actor=actor,
                reason=reason,
                message=message,
                project_name=project.name if project else "",
            )
            audit.record(
                actor, f"status.{to_status.lower()}", resource, from_status=from_status, reason=reason
            )
        refresh_project_status(project_id, project)
        if to_status == ResourceStatus.RUNNING and model is Sandbox:
            wake_tasks(project_ids=[project_id])  # tasks waiting for a running sandbox go now
    resource.status = to_status
    return True


@dataclass
class Write:
    """One leased row's result in a batch: a move to `to_status` (with its event), or, with `to_status`
    None, the columns in `values` alone (a step that stays in its status)."""

    resource: Resource
    to_status: str | None = None
    reason: str = ""
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def write_batch(
    model: type[Resource], writes: list[Write], *, actor: Actor, lease_token: uuid.UUID
) -> set[Any]:
    """Record many rows' results under one lease in one transaction and a constant number of statements:
    the moved rows' projects locked (in id order, so two batches never deadlock; always before the
    rows, as everywhere), the rows still holding `lease_token` locked, one UPDATE with per-row values,
    the TERMINATED rows deleted, their events and audit entries in one INSERT each, and the projects'
    statuses refreshed together. Rows that lost the lease are left as they are. Returns the pks written.
    """
    if not writes:
        return set()
    now = timezone.now()
    moves = [w for w in writes if w.to_status is not None and w.to_status != w.resource.status]
    with transaction.atomic():
        project_ids = sorted({w.resource.project_id for w in moves})  # type: ignore[attr-defined]
        projects = list(Project.all_objects.select_for_update().filter(pk__in=project_ids).order_by("pk"))
        held = set(
            model._default_manager.select_for_update()
            .filter(pk__in=[w.resource.pk for w in writes], lease_token=lease_token)
            .values_list("pk", flat=True)
        )
        writes = [w for w in writes if w.resource.pk in held]
        moves = [w for w in moves if w.resource.pk in held]
        gone = [w.resource.pk for w in moves if w.to_status == ResourceStatus.TERMINATED]
        columns: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        for w in writes:
            if w.to_status == ResourceStatus.TERMINATED:
                continue
            values = w.values
            if w.to_status is not None:
                values = status_values(
                    w.resource.status,
                    w.to_status,
                    message=w.message,
                    now=now,
                    lease_token=lease_token,
                    fields=w.values,
                )
            for name, value in values.items():
                columns[name].append((w.resource.pk, value))
        if columns:
            updated = held.difference(gone)
            model._default_manager.filter(pk__in=updated).update(
                **{name: _per_row(model, name, pairs, len(updated)) for name, pairs in columns.items()}
            )
        if gone:
            model._default_manager.filter(pk__in=gone).delete()
        names = {p.pk: p.name for p in projects}
        ResourceEvent.objects.bulk_create(
            _event(
                w.resource,
                from_status=w.resource.status,
                to_status=str(w.to_status),
                actor=actor,
                reason=w.reason,
                message=w.message,
                project_name=names.get(w.resource.project_id, ""),  # type: ignore[attr-defined]
            )
            for w in moves
        )
        audit.record_each(
            actor,
            (
                (
                    f"status.{str(w.to_status).lower()}",
                    w.resource,
                    {"from_status": w.resource.status, "reason": w.reason},
                )
                for w in moves
            ),
        )
        refresh_project_statuses(projects)
        if model is Sandbox:
            running = {w.resource.project_id for w in moves if w.to_status == ResourceStatus.RUNNING}  # type: ignore[attr-defined]
            if running:
                wake_tasks(project_ids=running)  # tasks waiting for a running sandbox go now
    for w in moves:
        w.resource.status = str(w.to_status)
    return held


def _per_row(model: type[models.Model], name: str, pairs: list[tuple[Any, Any]], rows: int) -> Any:
    """One column's new value for each of the `rows` updated rows: the value itself when every row gets
    the same one, else `CASE WHEN pk IN (...) THEN value ...` with one branch per distinct value (most
    columns of a batch share a few: the status, the time, a cleared lease); rows not listed keep theirs."""
    column = model._meta.get_field(name)
    assert isinstance(column, Field)
    groups: dict[str, tuple[Any, list[Any]]] = {}
    for pk, value in pairs:
        groups.setdefault(repr(value), (value, []))[1].append(pk)
    if len(groups) == 1 and len(pairs) == rows:
        return Value(pairs[0][1], output_field=column)
    return Case(
        *(When(pk__in=pks, then=Value(value, output_field=column)) for value, pks in groups.values()),
        default=F(name),
        output_field=column,
    )
