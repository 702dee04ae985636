"""Every write to projects, their environment and their resources (sandbox, database). One transaction
each; the cluster is never called here: the services record intent and kick the reconciler after
commit."""

import hmac
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import (
    Conflict,
    InvalidState,
    KubeconfigRequired,
    NotFound,
    QuotaExceeded,
    ValidationFailed,
)
from core.inputs import check_text, fullmatch
from core.quantities import bytes_of, millicores
from core.reports import plural
from core.text import text_problem
from github import connect as github_connect
from github import selectors as github_selectors
from github import services as github_services
from github.client import REPO_RE, GitHubError
from projects import selectors, status, task_services
from projects.models import (
    ENV_KEY_MAX,
    PROJECT_NAME_MAX,
    EnvCategory,
    Environment,
    PoolPolicy,
    Project,
    ProjectStatus,
    ProjectTask,
    Quota,
    TaskStatus,
    TaskType,
)
from projects.transitions import add_event, change_status, lock_project, refresh_project_status
from reconcile import manifests, names
from sandboxes.models import RESUMABLE, Database, Resource, ResourceStatus, Sandbox
from userconfig import services as userconfig_services
from userconfig.models import CheckStatus, ConfigKey, User, UserConfig

# Checked with fullmatch: `$` would also accept a trailing newline.
PROJECT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9 -]*")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_VALUE_MAX_BYTES = 32 * 1024
ENV_MAX_VARIABLES = 500
# All of a project's variables go into one Kubernetes Secret, whose data is limited to 1 MiB.
ENV_TOTAL_MAX_BYTES = 1024 * 1024
# The variable Tenter sets for the project's database.
DATABASE_URL_KEY = "DATABASE_URL"
DESCRIPTION_MAX = 2000

SIZE_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "storage_size")
# A number no other advisory lock of Tenter's uses, in the high bits of the quota lock's key.
QUOTA_LOCK_SPACE = 0x51_55_4F << 40  # "QUO"


def sandbox_size(name: Any) -> tuple[str, dict[str, str]]:
    """A size from settings.SANDBOX_SIZES by name (None or "" is the first, the smallest)."""
    sizes: dict[str, dict[str, str]] = settings.SANDBOX_SIZES
    if name is None or name == "":
        name = next(iter(sizes))
    if not isinstance(name, str) or name not in sizes:
        shown = name if isinstance(name, str) else type(name).__name__
        raise ValidationFailed(
            f"Unknown size '{shown[:40]}'. Sizes: {', '.join(sizes)}.",
            code="invalid_size",
            details={"sizes": list(sizes)},
        )
    return name, {field: sizes[name][field] for field in SIZE_FIELDS}


def lock_quota(user_id: int) -> None:
    """Serialize every quota-checked write of one user: a transaction-scoped advisory lock. Take it
    first in the transaction, before any row lock (nothing then waits for it while holding a row)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [QUOTA_LOCK_SPACE + int(user_id)])


def check_quota(user_id: int, **asked: int) -> None:
    """Refuse when what is asked (projects=1, cpu=millicores, memory=bytes...) would take the user over
    a limit. Call inside the transaction that records the intent, after `lock_quota(user_id)`, so two
    parallel requests never both see room for one."""
    wanted = {name: n for name, n in asked.items() if n > 0}
    if not wanted:
        return
    user = User(pk=user_id)
    limits, usage = selectors.quota_state(user=user)
    for name, n in wanted.items():
        if usage[name] + n > limits[name]:
            limit, in_use = selectors.show_quota(name, limits[name]), selectors.show_quota(name, usage[name])
            label = selectors.QUOTAS[name][4]
            raise QuotaExceeded(
                f"Quota exceeded: {label} {in_use} of {limit} in use, this needs "
                f"{selectors.show_quota(name, n)} more.",
                details={
                    "quota": name,
                    "limit": limits[name],
                    "in_use": usage[name],
                    "asked": n,
                    "unit": selectors.QUOTAS[name][3],
                },
            )


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def validate_project_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("Project name cannot be empty.", code="invalid_name")
    name = name.strip()
    if len(name) > PROJECT_NAME_MAX:
        raise ValidationFailed(
            f"Project name can be at most {PROJECT_NAME_MAX} characters.", code="invalid_name"
        )
    if not name[0].isascii() or not name[0].isalpha():
        raise ValidationFailed("Project name must start with a letter.", code="invalid_name")
    if not fullmatch(PROJECT_NAME_RE, name):
        raise ValidationFailed(
            "Project name can only contain letters, digits, spaces and hyphens.", code="invalid_name"
        )
    return name


def usable_kubeconfig(user: User) -> UserConfig:
    """The owner's kubeconfig state, or a clear refusal when there is none that can work."""
    config = UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG).defer("value").first()
    if config is None:
        raise KubeconfigRequired(
            "Upload a kubeconfig for your namespace before creating projects or databases."
        )
    if config.check_status == CheckStatus.FAILED:
        raise KubeconfigRequired(
            f"Your kubeconfig failed its cluster check: {config.check_message} Upload a working one first."
        )
    if config.check_status == CheckStatus.UNREACHABLE:
        raise KubeconfigRequired(
            f"Tenter cannot reach your cluster at {config.server_address}, so it cannot create anything "
            "there. Check that the cluster is up and its address in your kubeconfig is right (Settings)."
        )
    return config


def _system_env() -> list[tuple[str, str, str, bool]]:
    alnum = string.ascii_letters + string.digits
    return [
        ("TTYD_ACCESS_TOKEN", _random(alnum, 24), EnvCategory.TTYD, True),
        (
            "FILE_BROWSER_USERNAME",
            "fb-" + _random(string.ascii_lowercase, 8),
            EnvCategory.FILE_BROWSER,
            False,
        ),
        ("FILE_BROWSER_PASSWORD", _random(alnum, 16), EnvCategory.FILE_BROWSER, True),
        # What the sandbox sends to POST /api/v1/sandboxes/{id}/heartbeat to say someone is working.
        (HEARTBEAT_TOKEN, _random(alnum, 32), EnvCategory.AUTH, True),
    ]


def project_create(
    *,
    owner: User,
    name: Any,
    description: Any = "",
    size: Any = None,
    actor: Actor,
    repository: Mapping[str, Any] | None = None,
) -> Project:
    """A project and its sandbox; with `repository` (see `project_import`) also the task that clones it
    into the sandbox, in the same transaction."""
    name = validate_project_name(name)
    size_name, resources = sandbox_size(size)
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise ValidationFailed(f"Description must be text of at most {DESCRIPTION_MAX} characters.")
    check_text(description, "Description", code="invalid")
    kubeconfig = usable_kubeconfig(owner)
    domain = names.ingress_domain(kubeconfig.server, settings.INGRESS_DOMAIN)
    policy = pool_policy_for(settings.RUNTIME_IMAGE, size_name) if owner.warm_pool else None
    # No read-before-write: the unique constraints decide. A taken project name is a 409; a sandbox
    # name that collides in the namespace (8 random letters: practically never) is drawn again.
    for attempt in range(3):
        try:
            with transaction.atomic():
                lock_quota(owner.pk)
                if policy is not None:
                    warm = _claim_warm(owner, policy, name, description, repository, kubeconfig, actor)
                    if warm is not None:
                        project, sandbox, env_rows = warm
                        break
                check_quota(
                    owner.pk,
                    projects=1,
                    running_sandboxes=1,
                    cpu=millicores(resources["cpu_request"]),
                    memory=bytes_of(resources["memory_request"]),
                )
                project = Project.objects.create(
                    owner=owner,
                    name=name,
                    description=description,
                    **(_github_fields(repository) if repository else {}),
                )
                sandbox = _create_sandbox(project, kubeconfig, domain, size_name, resources)
                if repository:
                    _clone_task(project, sandbox, repository)
                env_rows = Environment.objects.bulk_create(
                    Environment(project=project, key=k, value=v, category=c, is_secret=s, is_system=True)
                    for k, v, c, s in _system_env()
                )
                add_event(
                    sandbox,
                    from_status="",
                    to_status=ResourceStatus.CREATING,
                    actor=actor,
                    reason="created",
                    message="Sandbox requested.",
                    project_name=project.name,
                )
                task_services.tasks_for_new_project(project=project, sandbox=sandbox)
                audit.record(actor, "project.create", project)
                kicks.kick(sandbox)
            break
        except IntegrityError as exc:
            if "project_unique_owner_lower_name" in str(exc):
                raise Conflict(f"You already have a project named '{name}'.", code="name_taken") from None
            if "sandbox_unique_k8s_name" not in str(exc) or attempt == 2:
                raise
    # The caller gets the project with what was just created, as if prefetched: no need to read it back.
    project._prefetched_objects_cache = {  # type: ignore[attr-defined]
        "sandboxes": _known(Sandbox.objects.filter(project=project), [sandbox]),
        "databases": _known(Database.objects.filter(project=project), []),
        "environment": _known(Environment.objects.filter(project=project), env_rows),
    }
    return project


# -- warm pools --------------------------------------------------------------------------------------
# A pool's idle member is a hidden project (Project.pool set; Project.objects leaves it out) with one
# RUNNING sandbox. A create whose image and size match a policy takes one in its own transaction and
# turns the hidden row into the user's project; the sandbox goes to UPDATING with `binding` set, and the
# reconciler binds it (reconcile/warm.py). Filling pools is projects/pools.py.


def pool_policy_for(image: str, size: str) -> PoolPolicy | None:
    return PoolPolicy.objects.filter(image=image, size=size, enabled=True).first()


def _claim_warm(
    owner: User,
    policy: PoolPolicy,
    name: str,
    description: str,
    repository: Mapping[str, Any] | None,
    kubeconfig: UserConfig,
    actor: Actor,
) -> tuple[Project, Sandbox, list[Environment]] | None:
    """Take one RUNNING idle member of the owner's pool and make it the project `name` (inside the
    create's transaction, after lock_quota). None, and a miss counted, when the pool has none.

    The project row is locked first with SKIP LOCKED (a member another create is taking is skipped,
    so no two creates take the same one), then its sandbox (project first, then resource)."""
    member = (
        Project.all_objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            owner=owner,
            pool=policy,
            sandboxes__status=ResourceStatus.RUNNING,
            sandboxes__binding=False,
            sandboxes__k8s_namespace=kubeconfig.namespace,
            sandboxes__k8s_server=kubeconfig.server_host,
        )
        .order_by("created_at")
        .first()
    )
    sandbox = None
    if member is not None:
        sandbox = (
            Sandbox.objects.select_for_update().filter(project=member, status=ResourceStatus.RUNNING).first()
        )
    if member is None or sandbox is None:
        _count_after_commit(policy, "misses")
        return None
    # The member's sandbox, CPU and memory already count against the quota: only the project is new.
    check_quota(owner.pk, projects=1)
    now = timezone.now()
    Project.all_objects.filter(pk=member.pk).update(
        name=name,
        description=description,
        pool=None,
        created_at=now,
        updated_at=now,
        **(_github_fields(repository) if repository else {}),
    )
    project = Project.objects.get(pk=member.pk)
    # Fresh credentials: none of the pool's terminal or file manager credentials stays valid. The
    # heartbeat token stays: only the sandbox itself ever had it, and its running processes send it.
    kept = dict(Environment.objects.filter(project=project, key=HEARTBEAT_TOKEN).values_list("key", "value"))
    Environment.objects.filter(project=project).delete()
    env_rows = Environment.objects.bulk_create(
        Environment(project=project, key=k, value=kept.get(k, v), category=c, is_secret=s, is_system=True)
        for k, v, c, s in _system_env()
    )
    if repository:
        _clone_task(project, sandbox, repository)
    change_status(
        sandbox,
        ResourceStatus.UPDATING,
        actor=actor,
        reason="binding",
        message="Binding a warm sandbox to the project.",
        fields={"binding": True},
    )
    sandbox.refresh_from_db()
    project.refresh_from_db()
    _count_after_commit(policy, "claims")
    task_services.tasks_for_new_project(project=project, sandbox=sandbox)
    audit.record(actor, "project.create", project)
    kicks.kick(sandbox)
    return project, sandbox, env_rows


def _count_after_commit(policy: PoolPolicy, counter: str) -> None:
    """+1 on the policy's claims or misses once the create has committed, in a statement of its own: in
    the create's transaction the policy row would stay locked until its commit, and every create of every
    user under that policy would queue on it."""
    transaction.on_commit(lambda: PoolPolicy.objects.filter(pk=policy.pk).update(**{counter: F(counter) + 1}))


def _github_fields(repository: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "github_installation": repository["installation"],
        "github_repo_full_name": repository["full_name"],
        "github_repo_id": repository["id"],
        "github_default_branch": repository["branch"],
    }


def _clone_task(project: Project, sandbox: Sandbox, repository: Mapping[str, Any]) -> ProjectTask:
    task = ProjectTask.objects.create(
        project=project,
        sandbox=sandbox,
        type=TaskType.CLONE_REPOSITORY,
        status=TaskStatus.WAITING_FOR_PREREQUISITES,
        max_attempts=settings.TASK_MAX_ATTEMPTS,
        payload={
            "installation_id": repository["installation"].installation_id,
            "repository": repository["full_name"],
            "repository_id": repository["id"],
            "branch": repository["branch"],
        },
    )
    kicks.kick(task)
    return task


# A repository's name as a project name: letters, digits, spaces and hyphens, starting with a letter.
def name_for_repository(repo_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9 -]+", "-", repo_name).strip("- ")
    if not name or not name[0].isalpha():
        name = f"repo-{name}".rstrip("-")
    return name[:PROJECT_NAME_MAX]


BRANCH_RE = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])")


def project_import(
    *,
    owner: User,
    installation_id: Any,
    repository: Any,
    branch: Any = None,
    name: Any = None,
    description: Any = "",
    size: Any = None,
    actor: Actor,
) -> Project:
    """A project from a GitHub repository the user's installation can access: the project, its sandbox
    and the clone task in one transaction (the clone runs once the sandbox is RUNNING)."""
    installation = github_selectors.installation_get(user=owner, installation_id=installation_id)
    github_services.require_usable(installation)
    if not isinstance(repository, str) or not REPO_RE.fullmatch(repository):
        raise ValidationFailed("The repository must be given as owner/name.", code="invalid_repository")
    if branch is not None and (not isinstance(branch, str) or not fullmatch(BRANCH_RE, branch)):
        raise ValidationFailed("That is not a valid branch name.", code="invalid_branch")
    try:
        app = github_connect.app()
        repo = app.repository(installation.installation_id, repository)
        chosen = branch or str(repo.get("default_branch") or "")
        if not chosen or not fullmatch(BRANCH_RE, chosen):
            raise ValidationFailed(
                "The repository has no default branch (is it empty?).", code="invalid_branch"
            )
        if (
            branch
            and branch != repo.get("default_branch")
            and not app.branch_exists(installation.installation_id, repository, branch)
        ):
            raise ValidationFailed(f"The repository has no branch '{branch}'.", code="branch_not_found")
    except GitHubError as exc:
        if exc.status == 404:
            raise NotFound("Repository not found in this installation.") from None
        raise github_selectors.as_service_error(exc) from None
    full_name = str(repo.get("full_name") or repository)
    if not REPO_RE.fullmatch(full_name):
        full_name = repository
    return project_create(
        owner=owner,
        name=name if name not in (None, "") else name_for_repository(full_name.split("/", 1)[1]),
        description=description,
        size=size,
        actor=actor,
        repository={
            "installation": installation,
            "full_name": full_name,
            "id": repo.get("id") if isinstance(repo.get("id"), int) else None,
            "branch": chosen,
        },
    )


def _known(queryset: QuerySet[Any], rows: list[Any]) -> QuerySet[Any]:
    """A queryset whose result is already known (what Django's prefetch_related stores)."""
    queryset._result_cache = list(rows)
    queryset._prefetch_done = True  # type: ignore[attr-defined]
    return queryset


def _create_sandbox(
    project: Project,
    kubeconfig: UserConfig,
    domain: str,
    size: str,
    resources: dict[str, str],
    *,
    base: str = "",
    image: str = "",
    **extra: Any,
) -> Sandbox:
    """The sandbox row of a new project (or of a warm pool member: `base` "warm", the policy's image and
    its pool fields in `extra`), in the namespace and on the cluster of the owner's kubeconfig."""
    k8s_name = names.resource_name(base or project.name)
    return Sandbox.objects.create(
        project=project,
        name=k8s_name,
        k8s_namespace=kubeconfig.namespace,
        k8s_server=kubeconfig.server_host,
        k8s_name=k8s_name,
        image=image or settings.RUNTIME_IMAGE,
        ingress_domain=domain,
        **manifests.urls(k8s_name, domain),
        size=size,
        **resources,
        **extra,
    )


def _resources(project: Project, lock: bool = False) -> list[Resource]:
    sandboxes = Sandbox.objects.filter(project=project)
    databases = Database.objects.filter(project=project)
    if lock:
        sandboxes, databases = sandboxes.select_for_update(), databases.select_for_update()
    return [*sandboxes, *databases]


def _locked(project: Project) -> tuple[Project, list[Resource]]:
    locked = lock_project(project.pk)
    if locked is None:
        raise NotFound("Project not found.")
    return locked, _resources(locked, lock=True)


def _move(
    resources: Iterable[Resource], targets: Mapping[str, str], *, actor: Actor, reason: str, message: str
) -> int:
    moved = 0
    for resource in resources:
        target = targets.get(resource.status)
        if resource.status == ResourceStatus.ERROR and target == "resume":
            target = (
                resource.failed_status if resource.failed_status in RESUMABLE else ResourceStatus.STARTING
            )
        if target and target != resource.status:
            change_status(
                resource, target, actor=actor, reason=reason, message=message, fields={"failed_status": ""}
            )
            kicks.kick(resource)
            moved += 1
    return moved


def _sandboxes_to_run(resources: Iterable[Resource], statuses: Iterable[str]) -> int:
    """How many sandboxes a start or retry moves into the running group."""
    return sum(1 for r in resources if isinstance(r, Sandbox) and r.status in statuses)


def project_start(*, project: Project, actor: Actor) -> Project:
    """Start the project's stopped resources. A start asked of a project that is running anyway is
    refused (409) but still counts as activity, recorded under the project's lock: an idle stop deciding
    at the same moment either comes first (and this start then starts it again) or sees the activity."""
    with transaction.atomic():
        lock_quota(project.owner_id)  # the lock first, then the rows (see check_quota)
        project, resources = _locked(project)
        refusal = status.start_refusal(project.status, [r.status for r in resources])
        if refusal:
            record_activity(project=project, force=True)
        else:
            check_quota(
                project.owner_id,
                running_sandboxes=_sandboxes_to_run(resources, ("STOPPED", "STOPPING", "ERROR")),
            )
            _move(
                resources,
                {"STOPPED": "STARTING", "STOPPING": "STARTING", "ERROR": "resume"},
                actor=actor,
                reason="start",
                message="Start requested.",
            )
            audit.record(actor, "project.start", project)
    if refusal:
        raise InvalidState(refusal)
    project.refresh_from_db()
    return project


def project_stop(*, project: Project, actor: Actor) -> Project:
    with transaction.atomic():
        project, resources = _locked(project)
        refusal = status.stop_refusal(project.status, [r.status for r in resources])
        if refusal:
            raise InvalidState(refusal)
        _move(
            resources,
            {"RUNNING": "STOPPING", "STARTING": "STOPPING", "ERROR": "STOPPING"},
            actor=actor,
            reason="stop",
            message="Stop requested.",
        )
        audit.record(actor, "project.stop", project)
    project.refresh_from_db()
    return project


# --- activity and idle stop --------------------------------------------------------------------------

HEARTBEAT_TOKEN = "TENTER_HEARTBEAT_TOKEN"
ACTIVITY_GRANULARITY = timedelta(seconds=60)  # at most one activity write a minute per sandbox


_OWNER: Any = object()


def idle_timeout(project: Project, owner_minutes: Any = _OWNER) -> timedelta | None:
    """How long the project's sandbox may sit without activity before it is stopped (None: never).
    The project's own timeout, else its owner's default (`owner_minutes`, read from the project's owner
    when not given), else settings.IDLE_STOP_MINUTES; 0 at any level means never."""
    minutes, _ = selectors.idle_setting(project, *([] if owner_minutes is _OWNER else [owner_minutes]))
    return timedelta(minutes=minutes) if minutes > 0 else None


def idle_stop_set(*, project: Project, minutes: Any, actor: Actor) -> Project:
    """The project's own idle timeout: None = the owner's default (or IDLE_STOP_MINUTES), 0 = never."""
    minutes = userconfig_services.validate_idle_minutes(minutes)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(idle_stop_minutes=minutes, updated_at=timezone.now())
        project.idle_stop_minutes = minutes
        audit.record(actor, "project.idle_stop", project, minutes=minutes)
    return project


def _bump(rows: QuerySet[Sandbox], *, force: bool = False) -> int:
    now = timezone.now()
    if not force:
        rows = rows.filter(
            Q(last_activity_at__isnull=True) | Q(last_activity_at__lt=now - ACTIVITY_GRANULARITY)
        )
    return rows.update(last_activity_at=now)


def record_activity(*, project: Project, force: bool = False) -> int:
    """Someone is using the project (dashboard, API, terminal, files): push back its idle stop. Cheap:
    one UPDATE that writes at most once a minute per sandbox (`force`: always, for "keep running")."""
    running = (ResourceStatus.RUNNING, ResourceStatus.STARTING)
    return _bump(Sandbox.objects.filter(project_id=project.pk, status__in=running), force=force)


def heartbeat(*, sandbox_id: Any, token: str) -> None:
    """A heartbeat from inside a sandbox (the runtime, an agent, an attached terminal), authenticated by
    its project's TENTER_HEARTBEAT_TOKEN. Unknown sandbox or wrong token: not found, alike."""
    pk = selectors.as_uuid(sandbox_id)
    sandbox = Sandbox.objects.filter(pk=pk).only("id", "project_id").first() if pk else None
    expected = None
    if sandbox is not None:
        expected = Environment.objects.filter(project_id=sandbox.project_id, key=HEARTBEAT_TOKEN).first()
    if (
        sandbox is None
        or expected is None
        or not hmac.compare_digest(expected.value.encode(), token.encode())
    ):
        raise NotFound("Sandbox not found.")
    _bump(Sandbox.objects.filter(pk=sandbox.pk))


def stop_if_idle(*, project_id: Any, actor: Actor) -> bool:
    """Stop a RUNNING project whose sandboxes have all been idle past its timeout, deciding under the
    project's lock so that activity or a user's action in the meantime wins. True when stopped."""
    with transaction.atomic():
        project = lock_project(project_id)
        if project is None or project.status != ProjectStatus.RUNNING:
            return False
        timeout = idle_timeout(project)
        resources = _resources(project, lock=True)
        sandboxes = [r for r in resources if isinstance(r, Sandbox)]
        refusal = status.stop_refusal(project.status, [r.status for r in resources])
        if timeout is None or not sandboxes or refusal:
            return False
        last = max(s.last_activity_at or s.status_changed_at for s in sandboxes)
        if timezone.now() - last < timeout:
            return False
        minutes = round(timeout.total_seconds() / 60)
        _move(
            resources,
            {"RUNNING": "STOPPING"},
            actor=actor,
            reason="idle",
            message=f"Stopped after {minutes} min without activity.",
        )
        audit.record(actor, "project.stop", project, reason="idle", idle_minutes=minutes)
    return True


def project_retry(*, project: Project, actor: Actor) -> Project:
    """Resume every resource in ERROR at the step that failed."""
    with transaction.atomic():
        lock_quota(project.owner_id)
        project, resources = _locked(project)
        if not any(r.status == ResourceStatus.ERROR for r in resources):
            raise InvalidState("Nothing to retry: no resource is in ERROR.")
        check_quota(project.owner_id, running_sandboxes=_sandboxes_to_run(resources, ("ERROR",)))
        _move(resources, {"ERROR": "resume"}, actor=actor, reason="retry", message="Retry requested.")
        audit.record(actor, "project.retry", project)
    project.refresh_from_db()
    return project


def project_delete(*, project: Project, actor: Actor) -> Project | None:
    """Mark every resource TERMINATING; the project row goes when the last resource is gone."""
    with transaction.atomic():
        project, resources = _locked(project)
        refusal = status.delete_refusal(project.status)
        if refusal:
            raise InvalidState(refusal)
        audit.record(actor, "project.delete", project)
        if not resources:
            project.delete()
            return None
        targets = {s: ResourceStatus.TERMINATING for s in ResourceStatus.values if s != "TERMINATING"}
        _move(resources, targets, actor=actor, reason="delete", message="Delete requested.")
    project.refresh_from_db()
    return project


def sandbox_resize(*, sandbox: Sandbox, size: Any, actor: Actor) -> Sandbox:
    """Give the sandbox another size: new requests and limits, the generation bumped, and a running
    sandbox rolled (UPDATING), as for an environment change. Storage only grows; quota-checked."""
    size_name, resources = sandbox_size(size)
    with transaction.atomic():
        lock_quota(sandbox.project.owner_id)
        project = lock_project(sandbox.project_id)
        row = Sandbox.objects.select_for_update().filter(pk=sandbox.pk).first() if project else None
        if project is None or row is None:
            raise NotFound("Sandbox not found.")
        if row.status in (ResourceStatus.TERMINATING, ResourceStatus.TERMINATED):
            raise InvalidState("The sandbox is being deleted.")
        if bytes_of(resources["storage_size"]) < bytes_of(row.storage_size):
            raise ValidationFailed(
                f"Size {size_name} has {resources['storage_size']} of storage, less than the sandbox's "
                f"{row.storage_size}: storage can only grow.",
                code="storage_cannot_shrink",
                details={"storage_size": row.storage_size, "asked": resources["storage_size"]},
            )
        if row.size == size_name and all(getattr(row, f) == v for f, v in resources.items()):
            return row
        check_quota(
            project.owner_id,
            cpu=millicores(resources["cpu_request"]) - millicores(row.cpu_request),
            memory=bytes_of(resources["memory_request"]) - bytes_of(row.memory_request),
        )
        from_size = row.size
        Sandbox.objects.filter(pk=row.pk).update(size=size_name, generation=F("generation") + 1, **resources)
        row.refresh_from_db()
        message = f"Resized from {from_size} to {size_name}."
        if row.status in (ResourceStatus.RUNNING, ResourceStatus.STARTING):
            change_status(row, ResourceStatus.UPDATING, actor=actor, reason="resized", message=message)
            kicks.kick(row)
        else:  # stopped: the new size applies when it starts; in flight: the generation tells the step
            add_event(
                row,
                from_status=row.status,
                to_status=row.status,
                actor=actor,
                reason="resized",
                message=message,
                project_name=project.name,
            )
        audit.record(actor, "sandbox.resize", row, from_size=from_size, size=size_name)
    row.refresh_from_db()
    return row


# --- quotas (the operator admin) --------------------------------------------------------------------


def quota_save(*, quota: Quota, actor: Actor) -> Quota:
    """Save a user's own limits (empty fields use the defaults in settings)."""
    with transaction.atomic():
        quota.save()
        audit.record(
            actor,
            "quota.save",
            quota,
            **{f: getattr(quota, f) for f in ("max_projects", "max_running_sandboxes", "max_databases")},
            max_cpu=quota.max_cpu,
            max_memory=quota.max_memory,
        )
    return quota


def quota_delete(*, quota: Quota, actor: Actor) -> None:
    with transaction.atomic():
        audit.record(actor, "quota.delete", quota)
        quota.delete()


# --- Environment ----------------------------------------------------------------------------------


def _validate_variable(item: Any, index: int) -> tuple[str, str, bool]:
    where = f"variables[{index}]"
    if not isinstance(item, dict):
        raise ValidationFailed(f"{where} must be an object with key, value and is_secret.")
    unknown = set(item) - {"key", "value", "is_secret"}
    if unknown:
        raise ValidationFailed(f"{where} has unknown field(s): {', '.join(sorted(unknown))}.")
    key, value, is_secret = item.get("key"), item.get("value"), item.get("is_secret", False)
    if not isinstance(key, str) or not fullmatch(ENV_KEY_RE, key):
        raise ValidationFailed(
            f"{where}.key must be a POSIX variable name (letters, digits and underscores, not starting "
            "with a digit).",
            code="invalid_key",
            details={"index": index},
        )
    if len(key) > ENV_KEY_MAX:
        raise ValidationFailed(f"{where}.key can be at most {ENV_KEY_MAX} characters.", code="invalid_key")
    if not isinstance(value, str):
        raise ValidationFailed(f"{where}.value must be a string.", code="invalid_value")
    problem = text_problem(value)
    if problem:
        raise ValidationFailed(f"{where}.value {problem}.", code="invalid_value", details={"index": index})
    if len(value.encode()) > ENV_VALUE_MAX_BYTES:
        raise ValidationFailed(f"{where}.value is larger than 32 KiB.", code="value_too_large")
    if not isinstance(is_secret, bool):
        raise ValidationFailed(f"{where}.is_secret must be true or false.", code="invalid_value")
    return key, value, is_secret


def config_changed(project: Project, *, actor: Actor, message: str) -> None:
    """Desired sandbox configuration changed: bump the generation; running sandboxes go to UPDATING.
    Stopped ones pick the change up when they start. Call inside the writing transaction."""
    Sandbox.objects.filter(project=project).update(generation=F("generation") + 1)
    for sandbox in Sandbox.objects.select_for_update().filter(
        project=project, status__in=[ResourceStatus.RUNNING, ResourceStatus.STARTING]
    ):
        change_status(sandbox, ResourceStatus.UPDATING, actor=actor, reason="config_changed", message=message)
        kicks.kick(sandbox)


def agent_settings_change(*, user: User, actor: Actor, **values: str | None) -> None:
    """Change the user's AI agent settings (userconfig) and roll every sandbox of theirs that runs
    (UPDATING), as an environment change does: the sandboxes' env carries the ANTHROPIC_* values. Stopped
    sandboxes pick the change up when they start. One transaction."""
    with transaction.atomic():
        userconfig_services.agent_settings_update(user=user, actor=actor, **values)
        if not any(v is not None for v in values.values()):
            return
        Sandbox.objects.filter(project__owner=user).update(generation=F("generation") + 1)
        rows = Sandbox.objects.select_for_update(of=("self",)).filter(
            project__owner=user, status__in=[ResourceStatus.RUNNING, ResourceStatus.STARTING]
        )
        for sandbox in rows.order_by("project_id"):  # the lock order of every multi-project write
            change_status(
                sandbox,
                ResourceStatus.UPDATING,
                actor=actor,
                reason="config_changed",
                message="AI agent settings changed.",
            )
            kicks.kick(sandbox)


def env_upsert(*, project: Project, variables: Any, actor: Actor) -> list[Environment]:
    if not isinstance(variables, list):
        raise ValidationFailed("variables must be a list.")
    parsed = [_validate_variable(item, i) for i, item in enumerate(variables)]
    keys = [k for k, _, _ in parsed]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValidationFailed(
            f"Duplicate key(s) in the batch: {', '.join(duplicates)}.", code="duplicate_key"
        )
    with transaction.atomic():
        project, _ = _locked(project)
        existing = {e.key: e for e in Environment.objects.select_for_update().filter(project=project)}
        system = sorted(k for k in keys if k in existing and existing[k].is_system)
        if system:
            raise ValidationFailed(
                f"{', '.join(system)} {'is' if len(system) == 1 else 'are'} managed by Tenter "
                "and cannot be changed.",
                code="system_variable",
            )
        managed = sorted(k for k in _database_env_keys(project) if k in keys and k not in existing)
        if managed:
            raise ValidationFailed(
                f"{managed[0]} is managed by Tenter while the project has a database.",
                code="system_variable",
            )
        new_count = len([k for k in keys if k not in existing])
        if len(existing) + new_count > ENV_MAX_VARIABLES:
            raise ValidationFailed(
                f"A project can have at most {ENV_MAX_VARIABLES} variables.", code="too_many"
            )
        after = {k: row.value for k, row in existing.items()} | {k: v for k, v, _ in parsed}
        total = env_size(after)
        if total > ENV_TOTAL_MAX_BYTES:
            raise ValidationFailed(
                f"The project's variables would take {total} bytes; together they must fit in "
                f"{ENV_TOTAL_MAX_BYTES // 1024} KiB (one Kubernetes Secret).",
                code="environment_too_large",
                details={"total_bytes": total, "max_bytes": ENV_TOTAL_MAX_BYTES},
            )
        changed = []
        for key, value, is_secret in parsed:
            category = EnvCategory.SECRET if is_secret else EnvCategory.GENERAL
            row = existing.get(key)
            if row is None:
                changed.append(
                    Environment.objects.create(
                        project=project, key=key, value=value, is_secret=is_secret, category=category
                    )
                )
            elif row.value != value or row.is_secret != is_secret:
                row.value, row.is_secret, row.category = value, is_secret, category
                row.save(update_fields=["value", "is_secret", "category", "updated_at"])
                changed.append(row)
        if changed:
            config_changed(
                project,
                actor=actor,
                message=f"Environment changed: {', '.join(sorted(e.key for e in changed))}.",
            )
            audit.record(actor, "env.upsert", project, keys=sorted(e.key for e in changed))
    return changed


def env_size(variables: Mapping[str, str]) -> int:
    """Bytes the variables take in the sandbox's Secret (keys and UTF-8 values)."""
    return sum(len(k) + len(v.encode()) for k, v in variables.items())


def _database_env_keys(project: Project) -> set[str]:
    """The variables Tenter gives the project's databases' URLs in (reserved while they live)."""
    rows = Database.objects.filter(project=project).exclude(status=ResourceStatus.TERMINATING)
    return set(rows.values_list("url_env_key", flat=True))


def env_delete(*, project: Project, key: str, actor: Actor) -> None:
    if not fullmatch(ENV_KEY_RE, key) or len(key) > ENV_KEY_MAX:
        raise NotFound("No variable with that name.")
    with transaction.atomic():
        project, _ = _locked(project)
        row = Environment.objects.select_for_update().filter(project=project, key=key).first()
        if row is None:
            raise NotFound(f"No variable named {key}.")
        if row.is_system:
            raise ValidationFailed(
                f"{key} is managed by Tenter and cannot be removed.", code="system_variable"
            )
        row.delete()
        config_changed(project, actor=actor, message=f"Environment variable {key} removed.")
        audit.record(actor, "env.delete", project, key=key)


def set_system_variable(*, project: Project, key: str, value: str | None, actor: Actor) -> None:
    """Write (or with None, remove) a Tenter-managed variable such as DATABASE_URL, and roll sandboxes."""
    with transaction.atomic():
        project, _ = _locked(project)
        row = Environment.objects.filter(project=project, key=key).first()
        if value is None:
            if row is None or not row.is_system:  # never remove the user's own variable
                return
            row.delete()
        elif row is None:
            Environment.objects.create(
                project=project,
                key=key,
                value=value,
                category=EnvCategory.DATABASE,
                is_secret=True,
                is_system=True,
            )
        elif not row.is_system:
            # The user's own variable of that name (database_add refuses to start then, and env_upsert
            # refuses the name while there is a database, so only a race gets here): keep theirs.
            sandbox = Sandbox.objects.filter(project=project).first()
            if sandbox is not None:
                add_event(
                    sandbox,
                    from_status=sandbox.status,
                    to_status=sandbox.status,
                    actor=actor,
                    reason="env_kept",
                    message=f"Your own {key} was kept; Tenter did not replace it.",
                    project_name=project.name,
                )
            return
        elif row.value == value:
            return
        else:
            row.value, row.is_system, row.is_secret = value, True, True
            row.save(update_fields=["value", "is_system", "is_secret", "updated_at"])
        config_changed(project, actor=actor, message=f"{key} {'removed' if value is None else 'updated'}.")


# --- the project's database ----------------------------------------------------------------------

# The reference's database defaults (fulling §4.8, §4.11).
DATABASE_RESOURCES = {
    "cpu_request": "100m",
    "cpu_limit": "1000m",
    "memory_request": "102Mi",
    "memory_limit": "1024Mi",
    "storage_size": "3Gi",
}


def database_env_key(env_key: str | None) -> str:
    """The variable a new database's URL goes in: DATABASE_URL, or a valid name the user chose."""
    if env_key in (None, ""):
        return DATABASE_URL_KEY
    if not isinstance(env_key, str) or len(env_key) > ENV_KEY_MAX or not fullmatch(ENV_KEY_RE, env_key):
        raise ValidationFailed(
            "The variable name must start with a letter or an underscore and contain only letters, "
            f"digits and underscores ({ENV_KEY_MAX} characters at most).",
            code="invalid_key",
            details={"field": "env_key"},
        )
    return env_key


def database_add(*, project: Project, actor: Actor, env_key: str | None = None) -> Database:
    """Add the project's PostgreSQL database (one per project, as in the reference). Its URL is given
    to the sandbox in DATABASE_URL, or in `env_key` (for a project that keeps its own DATABASE_URL)."""
    key = database_env_key(env_key)
    kubeconfig = usable_kubeconfig(project.owner)
    with transaction.atomic():
        lock_quota(project.owner_id)  # the lock first, then the rows (see check_quota)
        locked = lock_project(project.pk)
        if locked is None or locked.status in (ProjectStatus.TERMINATING, ProjectStatus.TERMINATED):
            raise InvalidState("The project is being deleted.")
        if Database.objects.filter(project=locked).exists():
            raise Conflict("This project already has a database.", code="database_exists")
        check_quota(
            locked.owner_id,
            databases=1,
            cpu=millicores(DATABASE_RESOURCES["cpu_request"]),
            memory=bytes_of(DATABASE_RESOURCES["memory_request"]),
        )
        taken = Environment.objects.filter(project=locked, key=key).first()
        if taken is not None and not (taken.is_system and key == DATABASE_URL_KEY):
            if key == DATABASE_URL_KEY:
                raise Conflict(
                    f"This project sets its own {DATABASE_URL_KEY}. Tenter never replaces it: give the "
                    "database's address another name (env_key, for example TENTER_DATABASE_URL), or "
                    "remove or rename yours first.",
                    code="database_url_taken",
                    details={"field": "env_key"},
                )
            raise Conflict(
                f"This project already has a variable named {key}; choose another name for the "
                "database's address.",
                code="env_key_taken",
                details={"field": "env_key"},
            )
        sandbox = locked.sandboxes.first()
        # beside the sandbox, wherever it lives
        namespace = sandbox.k8s_namespace if sandbox else kubeconfig.namespace
        server = sandbox.k8s_server if sandbox else kubeconfig.server_host
        k8s_name = names.database_name(locked.name)
        try:
            with transaction.atomic():
                database = Database.objects.create(
                    project=locked,
                    name=k8s_name,
                    k8s_namespace=namespace,
                    k8s_server=server,
                    k8s_name=k8s_name,
                    api_version=settings.KUBEBLOCKS_API_VERSION,
                    url_env_key=key,
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
            message="PostgreSQL database requested."
            + ("" if key == DATABASE_URL_KEY else f" Its address goes in {key}."),
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
        set_system_variable(project=locked.project, key=locked.url_env_key, value=None, actor=actor)
        audit.record(actor, "database.remove", locked)
        kicks.kick(locked)


# --- the owner's kubeconfig, where resources live ---------------------------------------------------


def _refuse_stranding(user: User | int, namespace: str, server_host: str) -> None:
    """Refuse a kubeconfig for another cluster or namespace while resources still live on the current
    one: the reconciler operates every object where it was created, so those would be stranded (the
    user deletes them first, or keeps the kubeconfig). The refusal lists them."""
    owner = Q(project__owner_id=user) if isinstance(user, int) else Q(project__owner=user)
    # (a warm pool's idle sandboxes are not the user's to delete: `_drain_pool_elsewhere` deletes them)
    elsewhere = owner & ~Q(status=ResourceStatus.TERMINATED) & Q(project__pool=None)
    elsewhere &= ~Q(k8s_namespace=namespace) | (~Q(k8s_server=server_host) & ~Q(k8s_server=""))
    stranded = [
        f"{row.resource_kind} {row.k8s_namespace}/{row.k8s_name} on {row.k8s_server or 'the current cluster'}"
        for model in (Sandbox, Database)
        for row in model.objects.filter(elsewhere).only("k8s_namespace", "k8s_name", "k8s_server")[:50]
    ]
    if stranded:
        shown = "; ".join(stranded[:3]) + (f"; and {len(stranded) - 3} more" if len(stranded) > 3 else "")
        raise Conflict(
            f"This kubeconfig is for namespace {namespace} on {server_host}, but "
            f"{plural(len(stranded), 'resource')} still live{'s' if len(stranded) == 1 else ''} where the "
            f"current one points ({shown}); delete their projects first.",
            code="kubeconfig_would_strand",
            details={"resources": stranded},
        )


def kubeconfig_change(*, user: User, text: str, actor: Actor) -> UserConfig:
    """Save a user's kubeconfig (refusing one that would strand resources, see _refuse_stranding). Over a
    working one it is stored as pending until its check passes (userconfig.services.kubeconfig_save)."""
    info = userconfig_services.kubeconfig_parse(text)
    _refuse_stranding(user, info.namespace, info.server_host)
    _drain_pool_elsewhere(user, info.namespace, info.server_host, actor)
    return userconfig_services.kubeconfig_save(user=user, text=text, actor=actor)


def _drain_pool_elsewhere(user: User, namespace: str, server_host: str, actor: Actor) -> None:
    """Delete the user's idle warm pool sandboxes that are not where a new kubeconfig points (the pool
    refills there once it is in use). Through the normal delete, while the current kubeconfig still
    works (a new one over a working one waits as pending until its check passes)."""
    elsewhere = ~Q(k8s_namespace=namespace) | (~Q(k8s_server=server_host) & ~Q(k8s_server=""))
    members = Sandbox.objects.filter(elsewhere, project__owner=user, project__pool__isnull=False)
    for project_id in list(members.values_list("project_id", flat=True)):
        with transaction.atomic():
            project = (
                Project.all_objects.select_for_update(skip_locked=True)
                .filter(pk=project_id, pool__isnull=False)
                .first()
            )
            if project is None or project.status == ProjectStatus.TERMINATING:
                continue
            project_delete(project=project, actor=actor)


def kubeconfig_pending_accept(*, user: User, actor: Actor) -> UserConfig:
    """The user's explicit "use it anyway": the pending kubeconfig replaces the one in use whatever its
    check said (still refused when it would strand resources)."""
    with transaction.atomic():
        pending = userconfig_services.kubeconfig_pending(user_id=user.pk, lock=True)
        if pending is None:
            raise NotFound("No new kubeconfig is waiting.")
        _refuse_stranding(user, pending.namespace, pending.server_host)
        return userconfig_services.kubeconfig_promote(user=user, actor=actor, pending=pending, checked=False)


def kubeconfig_pending_passed(*, user_id: int, updated_at: Any, status: str, message: str) -> bool:
    """The worker's step after the pending kubeconfig's check passed: promote it (True), unless it was
    replaced meanwhile or would strand resources (then that refusal is its check result)."""
    with transaction.atomic():
        pending = userconfig_services.kubeconfig_pending(user_id=user_id, lock=True)
        if pending is None or pending.updated_at != updated_at:
            return False
        try:
            _refuse_stranding(user_id, pending.namespace, pending.server_host)
        except Conflict as exc:
            userconfig_services.kubeconfig_record_check(
                user_id=user_id,
                status=CheckStatus.FAILED,
                message=exc.message,
                key=ConfigKey.KUBECONFIG_PENDING,
            )
            return False
        pending.check_status, pending.check_message, pending.checked_at = status, message, timezone.now()
        owner = User.objects.get(pk=user_id)
        userconfig_services.kubeconfig_promote(
            user=owner, actor=audit.RECONCILER, pending=pending, checked=True
        )
    return True


def cluster_access_problem(project: Project) -> str | None:
    """Why the project's cluster cannot be reached with the owner's kubeconfig (None: it can).

    Gone means: no kubeconfig stored, its check failed or the cluster does not answer, or it points
    at another cluster than the one the project's resources live on.
    """
    config = (
        UserConfig.objects.filter(user_id=project.owner_id, key=ConfigKey.KUBECONFIG).defer("value").first()
    )
    if config is None:
        return "no kubeconfig is stored"
    if config.check_status in (CheckStatus.FAILED, CheckStatus.UNREACHABLE):
        return f"the kubeconfig check failed: {config.check_message}"
    servers = {r.k8s_server for r in _resources(project) if r.k8s_server}
    if servers and config.server_host not in servers:
        return f"the kubeconfig now points at {config.server_host}, not at {', '.join(sorted(servers))}"
    return None


def _left_behind(resource: Resource) -> str:
    if isinstance(resource, Database):
        objects = [f"Cluster {resource.k8s_name} ({resource.api_version})"]
    else:
        objects = [f"{kind} {name}" for kind, name in manifests.sandbox_object_refs(resource.k8s_name)]
    where = f"namespace {resource.k8s_namespace}" + (
        f" on {resource.k8s_server}" if resource.k8s_server else ""
    )
    return f"Forgotten while cluster access was gone; possibly left behind in {where}: {', '.join(objects)}."


def project_forget(*, project: Project, actor: Actor) -> None:
    """Forget a project whose cluster cannot be reached: its rows go, its timeline keeps (one event
    per resource) what may be left behind on the cluster, and nothing there is touched. Refused
    (409) while the owner's kubeconfig can reach the cluster: delete the project instead."""
    with transaction.atomic():
        project, resources = _locked(project)
        problem = cluster_access_problem(project)
        if problem is None:
            raise Conflict(
                "The cluster can still be reached with the owner's kubeconfig: delete the project instead, "
                "which removes its objects from the cluster.",
                code="cluster_reachable",
            )
        for resource in resources:
            add_event(
                resource,
                from_status=resource.status,
                to_status=ResourceStatus.TERMINATED,
                actor=actor,
                reason="forgotten",
                message=f"{_left_behind(resource)} ({problem})",
                project_name=project.name,
            )
        audit.record(actor, "project.forget", project, reason=problem[:200])
        project.delete()  # the resources go with it (cascade); the events stay (project set to null)
