"""Writes to databases (sandboxes are created with their project in projects/services.py)."""

from django.conf import settings
from django.db import IntegrityError, transaction

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import Conflict, InvalidState
from projects.models import Project, ProjectStatus
from projects.services import set_system_variable, usable_kubeconfig
from reconcile import names
from sandboxes.models import Database, ResourceStatus
from sandboxes.transitions import add_event, change_status, lock_project, refresh_project_status

# The reference's database defaults (fulling §4.8, §4.11).
DATABASE_RESOURCES = {
    "cpu_request": "100m",
    "cpu_limit": "1000m",
    "memory_request": "102Mi",
    "memory_limit": "1024Mi",
    "storage_size": "3Gi",
}


def database_add(*, project: Project, actor: Actor) -> Database:
    """Add the project's PostgreSQL database (one per project, as in the reference)."""
    kubeconfig = usable_kubeconfig(project.owner)
    with transaction.atomic():
        locked = lock_project(project.pk)
        if locked is None or locked.status in (ProjectStatus.TERMINATING, ProjectStatus.TERMINATED):
            raise InvalidState("The project is being deleted.")
        if Database.objects.filter(project=locked).exists():
            raise Conflict("This project already has a database.", code="database_exists")
        sandbox = locked.sandboxes.first()
        namespace = sandbox.k8s_namespace if sandbox else kubeconfig.namespace
        k8s_name = names.database_name(locked.name)
        try:
            with transaction.atomic():
                database = Database.objects.create(
                    project=locked,
                    name=k8s_name,
                    k8s_namespace=namespace,
                    k8s_name=k8s_name,
                    api_version=settings.KUBEBLOCKS_API_VERSION,
                    **DATABASE_RESOURCES,
                )
        except IntegrityError:
            raise Conflict("Could not find a free database name; try again.") from None
        add_event(
            database,
            from_status="",
            to_status=ResourceStatus.CREATING,
            actor=actor,
            reason="created",
            message="PostgreSQL database requested.",
            project_name=locked.name,
        )
        refresh_project_status(locked.pk)
        audit.record(actor, "database.add", database)
        kicks.kick(database)
    return database


def database_remove(*, database: Database, actor: Actor) -> None:
    with transaction.atomic():
        lock_project(database.project_id)
        locked = Database.objects.select_for_update().filter(pk=database.pk).first()
        if locked is None or locked.status == ResourceStatus.TERMINATING:
            raise InvalidState("The database is already being removed.")
        change_status(
            locked, ResourceStatus.TERMINATING, actor=actor, reason="delete", message="Removal requested."
        )
        # The sandbox must stop pointing at it now, not when the cluster is done.
        set_system_variable(project=locked.project, key="DATABASE_URL", value=None, actor=actor)
        audit.record(actor, "database.remove", locked)
        kicks.kick(locked)
