"""Writes for project tasks and skills (one transaction each). The reconciler runs the tasks
(`reconcile/project_tasks.py`); these services only record intent and kick it after commit.

The latest intent wins: enabling a skill cancels its pending uninstalls and queues one install per
project; disabling cancels pending installs and queues one uninstall wherever an install ran. Tasks of
one project run one at a time, oldest first, so an uninstall never overtakes the install it undoes.
"""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import audit
from core import kick as kicks
from core.audit import Actor
from core.errors import InvalidState, NotFound
from core.reports import Report
from projects.models import (
    TASK_ACTIVE_STATUSES,
    Project,
    ProjectStatus,
    ProjectTask,
    Skill,
    TaskStatus,
    TaskType,
    UserSkill,
)
from projects.selectors import as_uuid
from sandboxes.models import Sandbox
from userconfig.models import User

WAITING = [TaskStatus.PENDING, TaskStatus.WAITING_FOR_PREREQUISITES]
GONE = [ProjectStatus.TERMINATING, ProjectStatus.TERMINATED]


def _catalog_skill(skill_id: Any) -> Skill:
    pk = as_uuid(skill_id)
    skill = Skill.objects.filter(pk=pk, enabled=True).first() if pk else None
    if skill is None:
        raise NotFound("Skill not found.")
    return skill


def _payload(skill: Skill, command: str) -> dict[str, Any]:
    return {"skill": skill.slug, "command": command}


def _primary_sandboxes(user: User) -> dict[Any, Any]:
    """Each live project of the user → its sandbox id (the first created), in one query."""
    rows = (
        Sandbox.objects.filter(project__owner=user)
        .exclude(project__status__in=GONE)
        .order_by("project_id", "created_at")
        .distinct("project_id")
        .values_list("project_id", "pk")
    )
    return dict(rows)


def _kick_all(tasks: list[ProjectTask]) -> None:
    for task in tasks:
        kicks.kick(task)


def _cancel(qs: Any, why: str) -> int:
    now = timezone.now()
    return int(
        qs.filter(status__in=WAITING).update(
            status=TaskStatus.CANCELLED,
            error=why,
            lease_token=None,
            locked_until=None,
            next_attempt_at=None,
            finished_at=now,
            updated_at=now,
        )
    )


def skill_enable(*, user: User, skill_id: Any, actor: Actor) -> UserSkill:
    """Enable a catalog skill for all the user's projects: one INSTALL task per project, with the
    install command as it is now. Enabling an enabled skill changes nothing. Constant queries."""
    skill = _catalog_skill(skill_id)
    with transaction.atomic():
        # The row lock on the user serialises enable/disable of one user (the latest intent wins).
        User.objects.select_for_update().filter(pk=user.pk).first()
        existing = UserSkill.objects.filter(user=user, skill=skill).first()
        if existing is not None:
            return existing
        user_skill = UserSkill.objects.create(
            user=user,
            skill=skill,
            install_command=skill.install_command,
            uninstall_command=skill.uninstall_command,
        )
        mine = ProjectTask.objects.filter(project__owner=user, skill=skill)
        _cancel(mine.filter(type=TaskType.UNINSTALL_SKILL), "Superseded: the skill was enabled again.")
        tasks = ProjectTask.objects.bulk_create(
            ProjectTask(
                project_id=project_id,
                sandbox_id=sandbox_id,
                skill=skill,
                type=TaskType.INSTALL_SKILL,
                payload=_payload(skill, user_skill.install_command),
                max_attempts=_max_attempts(),
            )
            for project_id, sandbox_id in _primary_sandboxes(user).items()
        )
        audit.record(actor, "skill.enable", user, skill=skill.slug, projects=len(tasks))
        _kick_all(tasks)
    return user_skill


def skill_disable(*, user: User, skill_id: Any, actor: Actor) -> Skill:
    """Disable a skill for all the user's projects: pending installs are cancelled, and an UNINSTALL task
    is queued in every project where an install ran (or runs). Disabling a disabled skill is a no-op."""
    skill = _catalog_skill_any(skill_id)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        user_skill = UserSkill.objects.filter(user=user, skill=skill).first()
        if user_skill is None:
            return skill
        mine = ProjectTask.objects.filter(project__owner=user, skill=skill)
        _cancel(mine.filter(type=TaskType.INSTALL_SKILL), "Superseded: the skill was disabled.")
        sandboxes = _primary_sandboxes(user)
        ran = set(
            mine.filter(type=TaskType.INSTALL_SKILL)
            .filter(Q(started_at__isnull=False) | Q(status=TaskStatus.RUNNING))
            .values_list("project_id", flat=True)
            .distinct()
        )
        tasks = ProjectTask.objects.bulk_create(
            ProjectTask(
                project_id=project_id,
                sandbox_id=sandbox_id,
                skill=skill,
                type=TaskType.UNINSTALL_SKILL,
                payload=_payload(skill, user_skill.uninstall_command),
                max_attempts=_max_attempts(),
            )
            for project_id, sandbox_id in sandboxes.items()
            if project_id in ran
        )
        user_skill.delete()
        audit.record(actor, "skill.disable", user, skill=skill.slug, projects=len(tasks))
        _kick_all(tasks)
    return skill


def _catalog_skill_any(skill_id: Any) -> Skill:
    """Disabling also works for a skill an operator has since withdrawn from the catalog."""
    pk = as_uuid(skill_id)
    skill = Skill.objects.filter(pk=pk).first() if pk else None
    if skill is None:
        raise NotFound("Skill not found.")
    return skill


def _max_attempts() -> int:
    return int(settings.TASK_MAX_ATTEMPTS)


def tasks_for_new_project(*, project: Project, sandbox: Sandbox) -> list[ProjectTask]:
    """INSTALL tasks for every skill the owner has enabled; call inside the creating transaction."""
    tasks = ProjectTask.objects.bulk_create(
        ProjectTask(
            project=project,
            sandbox=sandbox,
            skill_id=user_skill.skill_id,
            type=TaskType.INSTALL_SKILL,
            payload={"skill": user_skill.skill.slug, "command": user_skill.install_command},
            max_attempts=_max_attempts(),
        )
        for user_skill in UserSkill.objects.filter(user_id=project.owner_id).select_related("skill")
    )
    _kick_all(tasks)
    return tasks


def _locked_task(project: Project, task_id: Any) -> ProjectTask:
    pk = task_id if isinstance(task_id, int) else None
    if pk is None and isinstance(task_id, str) and task_id.isdigit() and len(task_id) < 19:
        pk = int(task_id)
    task = ProjectTask.objects.select_for_update().filter(pk=pk, project=project).first() if pk else None
    if task is None:
        raise NotFound("Task not found.")
    return task


def task_cancel(*, project: Project, task_id: Any, actor: Actor) -> ProjectTask:
    """Cancel a task that has not started (pending or waiting for its prerequisites)."""
    with transaction.atomic():
        task = _locked_task(project, task_id)
        if task.status not in WAITING:
            raise InvalidState(
                f"Only a pending or waiting task can be cancelled; this one is {task.status}.",
                code="task_not_cancellable",
            )
        _cancel(ProjectTask.objects.filter(pk=task.pk), "Cancelled by the user.")
        audit.record(actor, "task.cancel", task)
    task.refresh_from_db()
    return task


def task_retry(*, project: Project, task_id: Any, actor: Actor) -> ProjectTask:
    """Run a failed task again from its first attempt (unless a newer intent superseded it)."""
    with transaction.atomic():
        task = _locked_task(project, task_id)
        if task.status != TaskStatus.FAILED:
            raise InvalidState(
                f"Only a failed task can be retried; this one is {task.status}.", code="task_not_retryable"
            )
        if task.skill_id is not None:
            enabled = UserSkill.objects.filter(user_id=project.owner_id, skill_id=task.skill_id).exists()
            if enabled != (task.type == TaskType.INSTALL_SKILL):
                raise InvalidState(
                    "The skill was " + ("disabled" if not enabled else "enabled again") + " since: "
                    "this task no longer matches what you asked for.",
                    code="task_superseded",
                )
            newer = ProjectTask.objects.filter(
                project=project, skill_id=task.skill_id, created_at__gt=task.created_at
            ).exclude(status=TaskStatus.CANCELLED)
            if newer.exists():
                raise InvalidState("A newer task for this skill exists.", code="task_superseded")
        retry_task(task)
        audit.record(actor, "task.retry", task)
    task.refresh_from_db()
    return task


def retry_task(task: ProjectTask) -> None:
    """Back to PENDING with a fresh budget of attempts (inside a transaction, row locked)."""
    ProjectTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.PENDING,
        attempts=0,
        error="",
        lease_token=None,
        locked_until=None,
        next_attempt_at=None,
        finished_at=None,
        updated_at=timezone.now(),
    )
    kicks.kick(task)


def release_lease(task: ProjectTask) -> None:
    """Operators: free a task's lease now (its worker's result, if any, is then dropped)."""
    ProjectTask.objects.filter(pk=task.pk).update(lease_token=None, locked_until=None, next_attempt_at=None)
    kicks.kick(task)


def wake_tasks(*, project_ids: Iterable[Any]) -> None:
    """These projects' sandboxes are running (or one of their tasks finished): kick their waiting tasks
    now rather than at their next sweep. Call inside the writing transaction. Two statements however
    many projects."""
    ids = list(
        ProjectTask.objects.filter(project_id__in=list(project_ids), status__in=TASK_ACTIVE_STATUSES)
        .filter(lease_token__isnull=True)
        .values_list("pk", flat=True)[:200]
    )
    if ids:
        ProjectTask.objects.filter(pk__in=ids).update(next_attempt_at=None)
        for pk in ids:
            kicks.kick(ProjectTask(pk=pk))


# --- operators (the admin's actions): one report each, every task decided under its own row lock -----


def _per_task(tasks: Any, act: Any, actor: Actor, did: str) -> Report:
    report = Report("task", did)
    for pk in list(tasks.values_list("pk", flat=True)[:OPERATOR_BATCH]):
        try:
            with transaction.atomic():
                task = ProjectTask.objects.select_for_update().select_related("project").get(pk=pk)
                act(task, actor)
            report.done.append(str(pk))
        except InvalidState as exc:
            report.skip(exc.message)
        except ProjectTask.DoesNotExist:
            report.skip("gone")
    return report


OPERATOR_BATCH = 500


def _operator_cancel(task: ProjectTask, actor: Actor) -> None:
    if task.status not in WAITING:
        raise InvalidState(f"{task.status.lower()}, not pending")
    _cancel(ProjectTask.objects.filter(pk=task.pk), "Cancelled by an operator.")
    audit.record(actor, "task.cancel", task)


def _operator_retry(task: ProjectTask, actor: Actor) -> None:
    if task.status != TaskStatus.FAILED:
        raise InvalidState(f"{task.status.lower()}, not failed")
    retry_task(task)
    audit.record(actor, "task.retry", task)


def _operator_release(task: ProjectTask, actor: Actor) -> None:
    if task.lease_token is None and task.locked_until is None:
        raise InvalidState("no lease")
    release_lease(task)
    audit.record(actor, "task.release_lease", task)


def tasks_cancel(*, tasks: Any, actor: Actor) -> Report:
    return _per_task(tasks, _operator_cancel, actor, "cancelled")


def tasks_retry(*, tasks: Any, actor: Actor) -> Report:
    return _per_task(tasks, _operator_retry, actor, "queued again")


def tasks_release_lease(*, tasks: Any, actor: Actor) -> Report:
    """Free leases now (a worker that died holding one): the task is claimed again at once; a worker
    still running it has its result dropped."""
    return _per_task(tasks, _operator_release, actor, "released")
