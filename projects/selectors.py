"""Permission-scoped reads. Another user's object is simply not found."""

import base64
import uuid
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from config.errors import NotFound
from projects.models import Environment, Project, ProjectTask
from sandboxes.models import Database, ResourceEvent, Sandbox
from userconfig.models import User

SECRET_MASK = "••••••••"


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def projects_for(*, user: User, status: str | None = None, search: str | None = None) -> QuerySet[Project]:
    qs = Project.objects.filter(owner=user).prefetch_related(
        Prefetch("sandboxes", queryset=Sandbox.objects.order_by("created_at")),
        Prefetch("databases", queryset=Database.objects.order_by("created_at")),
    )
    if status:
        qs = qs.filter(status=status)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs.order_by("-created_at")


def project_get(*, user: User, project_id: Any) -> Project:
    pk = _uuid(project_id)
    project = projects_for(user=user).filter(pk=pk).first() if pk else None
    if project is None:
        raise NotFound("Project not found.")
    return project


def env_for(*, project: Project) -> list[Environment]:
    return list(Environment.objects.filter(project=project).order_by("created_at", "id"))


def env_value_for_display(row: Environment) -> str:
    return SECRET_MASK if row.is_secret else row.value


def events_for(*, project: Project, limit: int = 100) -> QuerySet[ResourceEvent]:
    return (
        ResourceEvent.objects.filter(project=project)
        .select_related("actor_user")
        .order_by("-created_at", "-id")[:limit]
    )


def tasks_for(*, project: Project) -> QuerySet[ProjectTask]:
    return ProjectTask.objects.filter(project=project).order_by("-created_at")


def sandbox_get(*, user: User, sandbox_id: Any) -> Sandbox:
    pk = _uuid(sandbox_id)
    sandbox = (
        Sandbox.objects.select_related("project").filter(pk=pk, project__owner=user).first() if pk else None
    )
    if sandbox is None:
        raise NotFound("Sandbox not found.")
    return sandbox


def database_get(*, user: User, project_id: Any, database_id: Any) -> Database:
    pk, project_pk = _uuid(database_id), _uuid(project_id)
    database = (
        Database.objects.select_related("project")
        .filter(pk=pk, project_id=project_pk, project__owner=user)
        .first()
        if pk and project_pk
        else None
    )
    if database is None:
        raise NotFound("Database not found.")
    return database


def terminal_url(sandbox: Sandbox) -> str | None:
    """The ttyd URL with its authorization token: a secret, for the owner only."""
    token = Environment.objects.filter(project_id=sandbox.project_id, key="TTYD_ACCESS_TOKEN").first()
    if token is None or not sandbox.ttyd_url:
        return None
    auth = base64.b64encode(f"user:{token.value}".encode()).decode()
    return f"{sandbox.ttyd_url}?authorization={auth}"


def filebrowser_credentials(sandbox: Sandbox) -> dict[str, str]:
    rows = Environment.objects.filter(
        project_id=sandbox.project_id, key__in=["FILE_BROWSER_USERNAME", "FILE_BROWSER_PASSWORD"]
    )
    values = {r.key: r.value for r in rows}
    return {
        "username": values.get("FILE_BROWSER_USERNAME", ""),
        "password": values.get("FILE_BROWSER_PASSWORD", ""),
    }
