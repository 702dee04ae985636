"""Permission-scoped reads. Another user's object is simply not found."""

import uuid
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from core.errors import NotFound
from projects.models import Environment, Project, ProjectTask
from reconcile.manifests import database_url, terminal_authorization
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
    return f"{sandbox.ttyd_url}?authorization={terminal_authorization(token.value)}"


def filebrowser_credentials(sandbox: Sandbox) -> dict[str, str]:
    rows = Environment.objects.filter(
        project_id=sandbox.project_id, key__in=["FILE_BROWSER_USERNAME", "FILE_BROWSER_PASSWORD"]
    )
    values = {r.key: r.value for r in rows}
    return {
        "username": values.get("FILE_BROWSER_USERNAME", ""),
        "password": values.get("FILE_BROWSER_PASSWORD", ""),
    }


# --- Dashboard reads (added for the browser dashboard) ---------------------------------------------

TRANSITIONAL_STATUSES = frozenset({"CREATING", "STARTING", "UPDATING", "STOPPING", "TERMINATING"})
STATUS_POLL_MAX_IDS = 200


def project_statuses(*, user: User, ids: Any) -> dict[str, dict[str, Any]]:
    """Live status of the given projects (at most STATUS_POLL_MAX_IDS) in two queries: the projects,
    then all their sandboxes and databases in one UNION. Unknown, foreign or deleted ids are left out."""
    from django.db.models import CharField, Value

    from projects.status import allowed_actions

    pks = [pk for pk in (_uuid(i) for i in list(ids)[:STATUS_POLL_MAX_IDS]) if pk]
    if not pks:
        return {}
    projects = list(
        Project.objects.filter(owner=user, pk__in=pks).values_list("id", "status", "status_changed_at")
    )
    if not projects:
        return {}
    owned = [pk for pk, _, _ in projects]
    fields = ("project_id", "id", "name", "status", "status_reason", "status_changed_at", "created_at")
    sandboxes = (
        Sandbox.objects.filter(project_id__in=owned)
        .annotate(kind=Value("sandbox", output_field=CharField()))
        .values_list(*fields, "kind")
    )
    databases = (
        Database.objects.filter(project_id__in=owned)
        .annotate(kind=Value("database", output_field=CharField()))
        .values_list(*fields, "kind")
    )
    out: dict[str, dict[str, Any]] = {
        str(pk): {
            "status": status,
            "status_changed_at": changed.isoformat() if changed else None,
            "sandboxes": [],
            "databases": [],
        }
        for pk, status, changed in projects
    }
    rows = sandboxes.union(databases, all=True).order_by("created_at")
    for project_id, pk, name, status, reason, changed, _, kind in rows:
        out[str(project_id)]["sandboxes" if kind == "sandbox" else "databases"].append(
            {
                "id": str(pk),
                "name": name,
                "status": status,
                "status_reason": reason,
                "status_changed_at": changed.isoformat() if changed else None,
            }
        )
    for item in out.values():
        statuses = [r["status"] for r in (*item["sandboxes"], *item["databases"])]
        item["allowed_actions"] = allowed_actions(item["status"], statuses)
        item["transitional"] = item["status"] in TRANSITIONAL_STATUSES or bool(
            TRANSITIONAL_STATUSES & set(statuses)
        )
    return out


def project_status_counts(*, user: User) -> dict[str, int]:
    """How many of the user's projects are in each status (one query), for the list's filter tabs."""
    from django.db.models import Count

    rows = Project.objects.filter(owner=user).values("status").annotate(n=Count("id")).order_by()
    return {row["status"]: row["n"] for row in rows}


def env_get(*, project: Project, key: str) -> Environment:
    row = Environment.objects.filter(project=project, key=key).first()
    if row is None:
        raise NotFound(f"No variable named {key}.")
    return row


def database_connection(database: Database) -> dict[str, Any]:
    """Host, port, user, password and URL of a ready database: a secret, for the owner only."""
    url = database_url(
        database.username, database.password, database.host, database.port or 5432, database.database_name
    )
    return {
        "host": database.host,
        "port": database.port,
        "database": database.database_name,
        "username": database.username,
        "password": database.password,
        "url": url,
    }
