"""Status changes of sandboxes and databases.

Every status change goes through `change_status`: it writes the row, appends a ResourceEvent and
re-aggregates the project status, all in one transaction. Locks are always taken project first,
then resource, so user actions and the reconciler cannot deadlock each other.
"""

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
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
    sandboxes = Sandbox.objects.filter(project_id=project_id).values_list("status", flat=True)
    databases = Database.objects.filter(project_id=project_id).values_list("status", flat=True)
    new_status = aggregate(sandboxes.union(databases, all=True))
    if new_status == ProjectStatus.TERMINATED:
        project.delete()
        return None
    if new_status != project.status:
        now = timezone.now()
        Project.all_objects.filter(pk=project_id).update(
            status=new_status, status_changed_at=now, updated_at=now
        )
        project.status = new_status
    return new_status


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
    return ResourceEvent.objects.create(
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
            wake_tasks(project_id=project_id)  # tasks waiting for a running sandbox go now
    resource.status = to_status
    return True
