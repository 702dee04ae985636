"""Permission-scoped reads. Another user's object is simply not found."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    CharField,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.errors import NotFound
from core.quantities import bytes_of, millicores, show_cpu, show_memory
from core.secrets import SECRET_MASK
from projects.models import (
    TASK_ACTIVE_STATUSES,
    Environment,
    Project,
    ProjectTask,
    Skill,
    TaskStatus,
    TaskType,
    UserSkill,
)
from reconcile.manifests import database_url, terminal_authorization
from sandboxes.models import (
    TRANSITIONAL,
    Database,
    ResourceEvent,
    ResourceStatus,
    Sandbox,
    lease_held_q,
    past_deadline_q,
)
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _latest_clone() -> QuerySet[ProjectTask]:
    return ProjectTask.objects.filter(project=OuterRef("pk"), type=TaskType.CLONE_REPOSITORY).order_by(
        "-created_at", "-pk"
    )


def with_import_state(qs: QuerySet[Project]) -> QuerySet[Project]:
    """Annotate each project with its latest clone task (status, error, id): `import_state` reads them."""
    latest = _latest_clone()
    return qs.annotate(
        clone_status=Subquery(latest.values("status")[:1]),
        clone_error=Subquery(latest.values("error")[:1]),
        clone_task_id=Subquery(latest.values("pk")[:1]),
    )


IMPORTING, IMPORTED, NEEDS_ATTENTION = "importing", "imported", "needs_attention"


def import_state(project: Project) -> dict[str, Any] | None:
    """For a project imported from GitHub: importing / imported / needs_attention, with the reason and
    the clone task's id (to retry it). None for other projects."""
    if not project.github_repo_full_name:
        return None
    if hasattr(project, "clone_status"):
        status, error, task_id = (
            getattr(project, f) for f in ("clone_status", "clone_error", "clone_task_id")
        )
    else:
        found = (
            ProjectTask.objects.filter(project=project, type=TaskType.CLONE_REPOSITORY)
            .order_by("-created_at", "-pk")
            .values_list("status", "error", "pk")
            .first()
        )
        status, error, task_id = found if found else (None, None, None)
    if status == TaskStatus.SUCCEEDED:
        state, reason = IMPORTED, ""
    elif status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        state, reason = NEEDS_ATTENTION, error or f"The repository clone was {str(status).lower()}."
    else:
        state, reason = IMPORTING, ""
    return {
        "state": state,
        "reason": reason,
        "task_id": task_id,
        "repository": project.github_repo_full_name,
        "branch": project.github_default_branch,
    }


def projects_for(*, user: User, status: str | None = None, search: str | None = None) -> QuerySet[Project]:
    qs = Project.objects.filter(owner=user).prefetch_related(
        Prefetch("sandboxes", queryset=Sandbox.objects.order_by("created_at")),
        Prefetch("databases", queryset=Database.objects.order_by("created_at")),
    )
    qs = with_import_state(qs)
    if status:
        qs = qs.filter(status=status)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs.order_by("-created_at")


# --- quotas -----------------------------------------------------------------------------------------

# Sandboxes in these statuses count against the running-sandboxes quota.
RUNNING_GROUP = (
    ResourceStatus.RUNNING,
    ResourceStatus.STARTING,
    ResourceStatus.CREATING,
    ResourceStatus.UPDATING,
)
# name: (Quota field, default setting, parse, unit, label, show)
QUOTAS: dict[str, tuple[str, str, Any, str, str, Any]] = {
    "projects": ("max_projects", "QUOTA_MAX_PROJECTS", int, "count", "projects", str),
    "running_sandboxes": (
        "max_running_sandboxes",
        "QUOTA_MAX_RUNNING_SANDBOXES",
        int,
        "count",
        "running",
        str,
    ),
    "databases": ("max_databases", "QUOTA_MAX_DATABASES", int, "count", "databases", str),
    "cpu": ("max_cpu", "QUOTA_MAX_CPU", millicores, "millicores", "CPU", show_cpu),
    "memory": ("max_memory", "QUOTA_MAX_MEMORY", bytes_of, "bytes", "memory", show_memory),
}


def quota_state(*, user: User) -> tuple[dict[str, int], dict[str, int]]:
    """The user's limits and what they use now, in two queries. Limits: their Quota row's fields where
    set, else the defaults in settings. Usage: projects, sandboxes RUNNING/STARTING/CREATING/UPDATING,
    databases, and the CPU (millicores) and memory (bytes) their sandboxes and databases request. Rows
    in TERMINATING still count: their objects are still on the cluster."""
    project_count = (
        Project.objects.filter(owner=OuterRef("pk")).order_by().values("owner").annotate(n=Count("pk"))
    )
    row = (
        User.objects.filter(pk=user.pk)
        .annotate(n_projects=Subquery(project_count.values("n")))
        .values("n_projects", *(f"quota__{field}" for field, *_ in QUOTAS.values()))
        .first()
    ) or {}
    limits = {}
    for name, (field, setting, parse, *_) in QUOTAS.items():
        value = row.get(f"quota__{field}")
        limits[name] = parse(getattr(settings, setting) if value in (None, "") else value)
    fields = ("kind", "status", "cpu_request", "memory_request")
    resources = [
        model.objects.filter(project__owner=user)
        .exclude(status=ResourceStatus.TERMINATED)
        .annotate(kind=Value(model.resource_kind, output_field=CharField()))
        .values_list(*fields)
        for model in (Sandbox, Database)
    ]
    rows = list(resources[0].union(resources[1], all=True))
    usage = {
        "projects": row.get("n_projects") or 0,
        "running_sandboxes": sum(
            1 for kind, status, _, _ in rows if kind == Sandbox.resource_kind and status in RUNNING_GROUP
        ),
        "databases": sum(1 for kind, *_ in rows if kind == Database.resource_kind),
        "cpu": sum(millicores(cpu) for _, _, cpu, _ in rows),
        "memory": sum(bytes_of(memory) for _, _, _, memory in rows),
    }
    return limits, usage


def show_quota(name: str, value: int) -> str:
    """A quota's value for people ("32", "1.5Gi", "20m")."""
    return str(QUOTAS[name][5](value))


def quota_for(*, user: User) -> dict[str, dict[str, Any]]:
    """Every quota with its limit, what is in use, the unit, and both for people."""
    limits, usage = quota_state(user=user)
    return {
        name: {
            "limit": limits[name],
            "in_use": usage[name],
            "unit": unit,
            "label": label,
            "limit_display": show_quota(name, limits[name]),
            "in_use_display": show_quota(name, usage[name]),
        }
        for name, (_, _, _, unit, label, _) in QUOTAS.items()
    }


def sandbox_sizes() -> list[dict[str, str]]:
    """The sandbox sizes of settings.SANDBOX_SIZES, smallest (the default) first."""
    return [{"name": name, **values} for name, values in settings.SANDBOX_SIZES.items()]


def project_get(*, user: User, project_id: Any) -> Project:
    pk = as_uuid(project_id)
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
    return (
        ProjectTask.objects.filter(project=project)
        .select_related("skill")
        .prefetch_related("attempt_rows")
        .order_by("-created_at", "-pk")
    )


def skills_for(*, user: User) -> QuerySet[Skill]:
    """The catalog, each skill annotated with `enabled` for this user (and the ones they enabled that an
    operator has since withdrawn, so they can disable them)."""
    mine = UserSkill.objects.filter(user=user, skill=OuterRef("pk"))
    return (
        Skill.objects.annotate(enabled_for_user=Exists(mine))
        .filter(Q(enabled=True) | Q(enabled_for_user=True))
        .order_by("name", "pk")
    )


SKILL_STATE: dict[tuple[str, str], str] = {
    (TaskType.INSTALL_SKILL, TaskStatus.PENDING): "installing",
    (TaskType.INSTALL_SKILL, TaskStatus.WAITING_FOR_PREREQUISITES): "installing",
    (TaskType.INSTALL_SKILL, TaskStatus.RUNNING): "installing",
    (TaskType.INSTALL_SKILL, TaskStatus.SUCCEEDED): "installed",
    (TaskType.INSTALL_SKILL, TaskStatus.FAILED): "failed",
    (TaskType.UNINSTALL_SKILL, TaskStatus.PENDING): "uninstalling",
    (TaskType.UNINSTALL_SKILL, TaskStatus.WAITING_FOR_PREREQUISITES): "uninstalling",
    (TaskType.UNINSTALL_SKILL, TaskStatus.RUNNING): "uninstalling",
    (TaskType.UNINSTALL_SKILL, TaskStatus.SUCCEEDED): "not_installed",
    (TaskType.UNINSTALL_SKILL, TaskStatus.FAILED): "failed",
}


def project_skills(*, project: Project) -> list[dict[str, Any]]:
    """Each skill of the catalog (or with tasks here) and its state in this project, from its latest task
    that was not cancelled: installing, installed, failed, uninstalling or not_installed. Two queries."""
    latest = (
        ProjectTask.objects.filter(project=project, skill__isnull=False)
        .exclude(status=TaskStatus.CANCELLED)
        .order_by("skill_id", "-created_at", "-pk")
        .distinct("skill_id")
    )
    by_skill = {task.skill_id: task for task in latest}
    mine = UserSkill.objects.filter(user_id=project.owner_id, skill=OuterRef("pk"))
    skills = (
        Skill.objects.annotate(enabled_for_user=Exists(mine))
        .filter(Q(enabled=True) | Q(pk__in=list(by_skill)) | Q(enabled_for_user=True))
        .order_by("name", "pk")
    )
    out = []
    for skill in skills:
        task = by_skill.get(skill.pk)
        state = SKILL_STATE.get((task.type, task.status), "not_installed") if task else "not_installed"
        out.append(
            {
                "skill": skill,
                "enabled": skill.enabled_for_user,  # type: ignore[attr-defined]
                "state": state,
                "label": state.replace("_", " "),
                "task_id": task.pk if task else None,
                "error": task.error if task and task.status == TaskStatus.FAILED else "",
            }
        )
    return out


def recent_tasks_for(*, project: Project, limit: int = 20) -> list[ProjectTask]:
    """The project page's tasks: the latest ones, without their attempt rows (one query)."""
    return list(
        ProjectTask.objects.filter(project=project)
        .select_related("skill")
        .order_by("-created_at", "-pk")[:limit]
    )


def has_active_tasks(*, project: Project) -> bool:
    return ProjectTask.objects.filter(project=project, status__in=TASK_ACTIVE_STATUSES).exists()


def sandbox_get(*, user: User, sandbox_id: Any) -> Sandbox:
    pk = as_uuid(sandbox_id)
    sandbox = (
        Sandbox.objects.select_related("project").filter(pk=pk, project__owner=user).first() if pk else None
    )
    if sandbox is None:
        raise NotFound("Sandbox not found.")
    return sandbox


def database_get(*, user: User, project_id: Any, database_id: Any) -> Database:
    pk, project_pk = as_uuid(database_id), as_uuid(project_id)
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

STATUS_POLL_MAX_IDS = 200


def project_statuses(*, user: User, ids: Any) -> dict[str, dict[str, Any]]:
    """Live status of the given projects (at most STATUS_POLL_MAX_IDS) in two queries: the projects,
    then all their sandboxes and databases in one UNION. Unknown, foreign or deleted ids are left out."""

    from projects.status import allowed_actions

    pks = [pk for pk in (as_uuid(i) for i in list(ids)[:STATUS_POLL_MAX_IDS]) if pk]
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
        .annotate(kind=Value(Sandbox.resource_kind, output_field=CharField()))
        .values_list(*fields, "kind")
    )
    databases = (
        Database.objects.filter(project_id__in=owned)
        .annotate(kind=Value(Database.resource_kind, output_field=CharField()))
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
        item["transitional"] = item["status"] in TRANSITIONAL or any(s in TRANSITIONAL for s in statuses)
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


# --- the operations overview (support staff) -----------------------------------------------------


def operations_overview(
    *, now: datetime | None = None, stuck_limit: int = 50, error_limit: int = 20
) -> dict[str, Any]:
    """Counts, stuck rows, reconcile lag and recent errors, in a constant number of queries."""
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    due = (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)) & (
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )
    kinds = []
    resource_models: tuple[Any, ...] = (Sandbox, Database)
    for model in resource_models:
        base = model.objects.all()
        if model is Database:
            base = base.defer("password")
        counts = dict(base.order_by().values_list("status").annotate(n=Count("pk")))
        lag = base.filter(status__in=TRANSITIONAL).aggregate(
            oldest=Min("status_changed_at"),
            oldest_due=Min(Coalesce("next_attempt_at", "status_changed_at"), filter=due),
            leased=Count("pk", filter=lease_held_q(now)),
            past_deadline=Count("pk", filter=past_deadline_q(now)),
        )
        stuck = list(
            base.filter(past_deadline_q(now))
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
                "kind": model.resource_kind,
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


IdleSource = str  # "project" (its own), "user" (the owner's default) or "default" (settings)
_OWNER = object()


def idle_setting(project: Project, owner_minutes: Any = _OWNER) -> tuple[float, IdleSource]:
    """The idle timeout that applies to a project, in minutes (0: never), and where it comes from: the
    project's own, else its owner's default, else settings.IDLE_STOP_MINUTES. Pass `owner_minutes` (the
    owner's `idle_stop_minutes`) when the owner is at hand; otherwise it is read (one query)."""
    if project.idle_stop_minutes is not None:
        return project.idle_stop_minutes, "project"
    if owner_minutes is _OWNER:
        if Project.owner.is_cached(project):  # type: ignore[attr-defined]
            owner_minutes = project.owner.idle_stop_minutes
        else:
            owner_minutes = (
                User.objects.filter(pk=project.owner_id).values_list("idle_stop_minutes", flat=True).first()
            )
    if owner_minutes is not None:
        return int(owner_minutes), "user"
    return max(0.0, float(settings.IDLE_STOP_MINUTES)), "default"


def idle_candidates(*, limit: int = 100, now: datetime | None = None) -> list[Any]:
    """Projects with a RUNNING sandbox idle past the timeout that applies (the project's, its owner's
    or the default one), oldest activity first. A candidate only: `services.stop_if_idle` decides
    under the project's lock."""
    now = now or timezone.now()
    minutes = Coalesce(
        F("project__idle_stop_minutes"),
        F("project__owner__idle_stop_minutes"),
        Value(int(settings.IDLE_STOP_MINUTES)),
    )
    last_seen = Coalesce("last_activity_at", "status_changed_at")
    idle_after = ExpressionWrapper(minutes * Value(timedelta(minutes=1)), output_field=DurationField())
    rows = (
        # (a warm pool's idle sandbox waits for a project: it is not idle, it is ready)
        Sandbox.objects.filter(status=ResourceStatus.RUNNING, project__status="RUNNING", project__pool=None)
        .annotate(timeout_minutes=minutes, last_seen=last_seen)
        .filter(timeout_minutes__gt=0)
        .annotate(stops_at=ExpressionWrapper(F("last_seen") + idle_after, output_field=DateTimeField()))
        .filter(stops_at__lte=now)
        .order_by("last_seen")
        .values_list("project_id", flat=True)[:limit]
    )
    return list(dict.fromkeys(rows))


def env_overwrites(*, project: Project, variables: list[dict[str, Any]]) -> list[str]:
    """The keys among `variables` the user already set, to another value: replacing them asks first."""
    current = {row.key: row for row in env_for(project=project) if not row.is_system}
    return sorted(
        str(v["key"])
        for v in variables
        if v["key"] in current
        and (current[v["key"]].value != v["value"] or current[v["key"]].is_secret != v["is_secret"])
    )


def has_own_database_url(*, project: Project) -> bool:
    """The user set DATABASE_URL themselves: adding a database would need that name (it is refused)."""
    return Environment.objects.filter(project=project, key="DATABASE_URL", is_system=False).exists()
