"""Run project tasks inside sandboxes, on the same claim/lease/record engine as resources.

One claim is one task (its own lease, TASK_LEASE_SECONDS, longer than the script's time limit). A step:

1. checks the prerequisites (the sandbox is RUNNING; for skills, the project's clone succeeded; no older
   task of the project is still to run): otherwise the task WAITS, and is woken when they hold. A stopped
   sandbox is never started for a task;
2. starts an attempt: a conditional write on the lease (status RUNNING, attempts + 1, a
   ProjectTaskAttempt row whose (task, number) is unique, so one attempt never runs twice);
3. runs the task type's idempotent script with the gateway's `exec` (argv, never a terminal);
4. records the attempt (exit code, duration, redacted output tail) and the task's next state on the lease:
   SUCCEEDED; PENDING again after a jittered exponential backoff; or FAILED with the reason when no
   attempts remain or retrying cannot help (403 on exec, an unsupported type).

Adding a task type: write an executor (payload → shell script and its arguments) and put it in
EXECUTORS. CLONE_REPOSITORY has none yet (it comes with the GitHub integration); DEPLOY_PROJECT neither:
such tasks end FAILED with "not supported yet", never silently.
"""

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core import kick as kicks
from core.text import redact
from projects.models import (
    TASK_ACTIVE_STATUSES,
    EnvCategory,
    Environment,
    ProjectTask,
    ProjectTaskAttempt,
    TaskStatus,
    TaskType,
)
from projects.task_services import wake_tasks
from reconcile import clone, engine, manifests, names
from reconcile.clone import NotYet, Script
from reconcile.kube.client import sh
from reconcile.kube.errors import KubeCredentials, KubeError, KubeNotFound, KubePermanent, KubeTransient
from reconcile.runner import client_for
from sandboxes.models import ResourceStatus
from userconfig.models import CheckStatus, ConfigKey, UserConfig

logger = logging.getLogger(__name__)

PROJECT_DIR = f"{manifests.HOME_DIR}/next"  # the project folder in the runtime image


def _due(now: datetime) -> Q:
    return Q(status__in=TASK_ACTIVE_STATUSES) & engine.lease_free_q(now)


QUEUE = engine.Queue(
    model=ProjectTask, due=_due, age="created_at", related=("project", "sandbox", "project__owner")
)


# --- executors: payload → (script, args); each script idempotent ----------------------------------

# $1: the project folder; $2: the command. Where a sandbox keeps no such folder (kubesim runs the
# command on the host, HOME inside the pod's folder), $HOME/next stands in for it.
IN_PROJECT = """set -e
dir="$1"
if [ ! -d "$dir" ]; then dir="$HOME/next"; mkdir -p "$dir"; fi
cd "$dir"
eval "$2"
"""


def _skill_script(task: ProjectTask) -> tuple[str, list[str]]:
    command = task.payload.get("command") if isinstance(task.payload, dict) else None
    if not isinstance(command, str) or not command.strip():
        raise ValueError("the task has no command to run")
    # Skill commands come from the operators' catalog and are meant to be idempotent (`skills add` of an
    # installed skill and `skills remove` of a missing one succeed).
    return IN_PROJECT, [PROJECT_DIR, command]


Executor = Callable[[ProjectTask], "tuple[str, list[str]] | Script"]
EXECUTORS: dict[str, Executor] = {
    TaskType.INSTALL_SKILL: _skill_script,
    TaskType.UNINSTALL_SKILL: _skill_script,
    TaskType.CLONE_REPOSITORY: clone.clone_script,
}


# --- outcomes ------------------------------------------------------------------------------------


@dataclass
class TaskOutcome:
    status: str  # the task's next status
    reason: str = ""  # status_reason
    error: str | None = None  # None: leave the last error alone
    retry_in: float | None = None
    output: str | None = None
    result: dict[str, Any] | None = None
    attempt: dict[str, Any] | None = None  # the attempt row's fields, when an attempt ran
    lost: bool = False  # the lease was lost before the attempt started: write nothing

    @property
    def failed(self) -> bool:
        """An attempt ran and did not succeed (the engine's step metrics count it as failed)."""
        return self.status == TaskStatus.FAILED or (
            self.attempt is not None and self.status != TaskStatus.SUCCEEDED
        )


def backoff_seconds(attempts: int) -> float:
    base = float(settings.TASK_BACKOFF_BASE_SECONDS)
    cap = float(settings.TASK_BACKOFF_MAX_SECONDS)
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return random.uniform(delay / 2, delay)


def _secrets(task: ProjectTask) -> list[str]:
    values = list(
        Environment.objects.filter(project_id=task.project_id)
        .filter(Q(is_secret=True) | Q(category=EnvCategory.DATABASE))
        .values_list("value", flat=True)
    )
    values += list(
        UserConfig.objects.filter(user_id=task.project.owner_id, key=ConfigKey.ANTHROPIC_API_KEY).values_list(
            "value", flat=True
        )
    )
    return [str(v) for v in values]


def _tail(text: str) -> str:
    limit = settings.TASK_OUTPUT_TAIL_CHARS
    return text if len(text) <= limit else "…" + text[-limit:]


def _wait(reason: str, poll: float | None = None) -> TaskOutcome:
    return TaskOutcome(
        status=TaskStatus.WAITING_FOR_PREREQUISITES,
        reason=reason,
        retry_in=poll if poll is not None else settings.TASK_WAIT_POLL_SECONDS,
    )


def _fail(reason: str, **kw: Any) -> TaskOutcome:
    return TaskOutcome(status=TaskStatus.FAILED, reason=reason, error=reason, **kw)


def prerequisites(task: ProjectTask) -> TaskOutcome | None:
    """Why the task cannot run now (an outcome: wait, or fail), or None when it can."""
    sandbox = task.sandbox
    if sandbox is None:
        return _fail("The project has no sandbox to run this task in.")
    if sandbox.status != ResourceStatus.RUNNING:
        return _wait(
            f"Waiting for the sandbox to be running (it is {sandbox.status}); "
            "a stopped sandbox is never started for a task."
        )
    if task.type in (TaskType.INSTALL_SKILL, TaskType.UNINSTALL_SKILL):
        clone = (
            ProjectTask.objects.filter(project_id=task.project_id, type=TaskType.CLONE_REPOSITORY)
            .order_by("-created_at")
            .values_list("status", flat=True)
            .first()
        )
        if clone is not None and clone != TaskStatus.SUCCEEDED:
            if clone in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                return _fail(f"The repository clone this skill needs did not succeed ({clone}).")
            return _wait("Waiting for the repository clone to finish.")
    older = (
        ProjectTask.objects.filter(project_id=task.project_id, status__in=TASK_ACTIVE_STATUSES)
        .filter(Q(created_at__lt=task.created_at) | Q(created_at=task.created_at, pk__lt=task.pk))
        .exclude(type=TaskType.CLONE_REPOSITORY)
        .exists()
    )
    if older:
        return _wait("Waiting for the project's earlier tasks to finish.", poll=5.0)
    return None


def _kubeconfig(task: ProjectTask) -> tuple[UserConfig | None, str]:
    config = UserConfig.objects.filter(user_id=task.project.owner_id, key=ConfigKey.KUBECONFIG).first()
    if config is None:
        return None, "Waiting: no kubeconfig is stored for the owner."
    if config.check_status in (CheckStatus.FAILED, CheckStatus.UNREACHABLE):
        return None, f"Waiting: the kubeconfig check failed: {config.check_message}"
    return config, ""


def _start(task: ProjectTask) -> int | None:
    """Start the next attempt on our lease: its number, or None when the lease was lost."""
    number = task.attempts + 1
    now = timezone.now()
    assert task.lease_token is not None
    try:
        with transaction.atomic():
            written = ProjectTask.objects.filter(pk=task.pk, lease_token=task.lease_token).update(
                status=TaskStatus.RUNNING,
                attempts=number,
                started_at=Coalesce("started_at", now),
                status_reason=f"Attempt {number} of {task.max_attempts} is running.",
                updated_at=now,
            )
            if not written:
                return None
            # Attempt rows keep counting after a Retry (which restarts `attempts` from 0): the task's row
            # lock taken by the update above serializes this read.
            last = ProjectTaskAttempt.objects.filter(task=task).aggregate(n=Max("number"))["n"] or 0
            ProjectTaskAttempt.objects.create(
                task=task, number=max(number, last + 1), started_at=now, lease_token=task.lease_token
            )
    except IntegrityError:  # another worker already started this attempt: never run it twice
        logger.warning("task %s: attempt %s already started elsewhere", task.pk, number)
        return None
    task.attempts, task.status = number, TaskStatus.RUNNING
    return number


def _after_failure(task: ProjectTask, message: str, *, retry: bool, **kw: Any) -> TaskOutcome:
    if retry and task.attempts < task.max_attempts:
        delay = backoff_seconds(task.attempts)
        return TaskOutcome(
            status=TaskStatus.PENDING,
            reason=f"Attempt {task.attempts} of {task.max_attempts} failed; next in {delay:.0f} s.",
            error=message,
            retry_in=delay,
            **kw,
        )
    if retry:
        message = f"Failed after {task.attempts} attempts: {message}"
    return _fail(message, **kw)


def step(task: ProjectTask) -> TaskOutcome:
    if task.status == TaskStatus.RUNNING and task.attempts >= task.max_attempts:
        return _fail(
            f"The worker running attempt {task.attempts} was lost and no attempts remain "
            "(the script may or may not have finished)."
        )
    waiting = prerequisites(task)
    if waiting is not None:
        return waiting
    executor = EXECUTORS.get(task.type)
    if executor is None:
        return _fail(f"{task.get_type_display()} tasks are not supported yet.")
    try:
        plan = executor(task)
    except ValueError as exc:
        return _fail(f"The task cannot run: {exc}.")
    except NotYet as exc:  # e.g. GitHub unavailable for a token: wait, without using an attempt
        return _wait(str(exc), poll=backoff_seconds(task.attempts + 1))
    if not isinstance(plan, Script):
        plan = Script(*plan)
    config, why = _kubeconfig(task)
    if config is None:
        return _wait(why)
    sandbox = task.sandbox
    assert sandbox is not None
    number = _start(task)
    if number is None:
        return TaskOutcome(status=task.status, lost=True)
    started = time.monotonic()
    secrets = [*_secrets(task), *plan.secrets]
    try:
        kube = client_for(config).for_step(sandbox.k8s_namespace)
        result = kube.exec(
            names.pod_name(sandbox.k8s_name),
            sh(plan.script, *plan.args),
            stdin=plan.stdin,
            timeout=settings.TASK_EXEC_TIMEOUT_SECONDS,
            container=sandbox.k8s_name,
            redact=secrets,
        )
    except KubeError as exc:
        duration = time.monotonic() - started
        message = _exec_error(exc)
        attempt = {"duration": duration, "error": message}
        return _after_failure(
            task, message, retry=not isinstance(exc, KubeCredentials | KubePermanent), attempt=attempt
        )
    output = _tail(
        redact((result.stdout + ("\n" if result.stdout and result.stderr else "") + result.stderr), secrets)
    )
    attempt = {"duration": result.duration, "exit_code": result.exit_code, "output": output}
    if result.ok:
        return TaskOutcome(
            status=TaskStatus.SUCCEEDED,
            reason=f"Succeeded on attempt {number}.",
            error="",
            output=output,
            attempt=attempt,
            result={"exit_code": 0, "duration": round(result.duration, 3), **plan.result},
        )
    message = redact(result.failure(), secrets)
    attempt["error"] = message
    return _after_failure(task, message, retry=True, output=output, attempt=attempt)


def _exec_error(exc: KubeError) -> str:
    if isinstance(exc, KubeCredentials):
        return (
            "Tenter may not run commands in this sandbox: the cluster refused pods/exec (403). "
            "Grant the kubeconfig's user `create` on `pods/exec` in the namespace, then retry."
        )
    if isinstance(exc, KubeTransient) and exc.reason == "ExecTimeout":
        return f"The command did not finish within {settings.TASK_EXEC_TIMEOUT_SECONDS:.0f} s."
    if isinstance(exc, KubeNotFound):
        return "The sandbox's pod is gone (restarting?)."
    return exc.message or "Kubernetes request failed"


def record(task: ProjectTask, outcome: TaskOutcome) -> float | None:
    """Write the outcome while our lease holds (and release it). Returns when to come back, or None."""
    assert task.lease_token is not None
    if outcome.lost:
        logger.warning("lease lost on task %s before its attempt started: nothing run", task.pk)
        return None
    now = timezone.now()
    values: dict[str, Any] = {
        "status": outcome.status,
        "status_reason": outcome.reason[:500],
        "lease_token": None,
        "locked_until": None,
        "updated_at": now,
        "next_attempt_at": now + timedelta(seconds=outcome.retry_in) if outcome.retry_in else None,
    }
    if outcome.error is not None:
        values["error"] = outcome.error
    if outcome.output is not None:
        values["output"] = outcome.output
    if outcome.result is not None:
        values["result"] = outcome.result
    terminal = outcome.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    if terminal:
        values["finished_at"] = now
    with transaction.atomic():
        if outcome.attempt is not None:
            ProjectTaskAttempt.objects.filter(
                task=task, lease_token=task.lease_token, finished_at__isnull=True
            ).update(finished_at=now, **outcome.attempt)
        written = ProjectTask.objects.filter(pk=task.pk, lease_token=task.lease_token).update(**values)
        if written and terminal:
            wake_tasks(project_ids=[task.project_id])  # the next task of the project may go now
    if not written:
        logger.warning("lease lost on task %s (%s): result dropped", task.pk, outcome.status)
        return None
    return outcome.retry_in


def _crashed(exc: Exception) -> TaskOutcome:
    return TaskOutcome(
        status=TaskStatus.PENDING,
        reason="An internal error interrupted the task; trying again later.",
        error=f"internal error: {exc.__class__.__name__}",
        retry_in=float(settings.TASK_BACKOFF_BASE_SECONDS),
    )


def _follow_up(task: ProjectTask, delay: float) -> None:
    kicks.send_later(kicks.task_for(ProjectTask), str(task.pk), delay + 0.05)


def _run(rows: list[ProjectTask]) -> int:
    return engine.run_batch(
        ProjectTask, step, rows, follow_up=_follow_up, record_fn=record, on_crash=_crashed, lease=_lease()
    )


def _lease() -> float:
    return float(settings.TASK_LEASE_SECONDS)


def reconcile(*, ids: list[Any] | None = None) -> int:
    """Claim and run one due task (of `ids`, when given). Returns how many were claimed (0 or 1)."""
    rows = engine.claim(QUEUE, ids=ids, limit=1, lease=_lease())
    return _run(rows) if rows else 0


def sweep(*, budget: float | None = None, limit: int | None = None) -> bool:
    """Run due tasks one claim at a time (each with its own lease) for up to `budget` seconds.
    True when work may remain."""
    budget = budget if budget is not None else float(settings.RECONCILE_SWEEP_SECONDS) * 5
    limit = limit or settings.RECONCILE_BATCH_SIZE
    started = time.monotonic()
    for _ in range(limit):
        if time.monotonic() - started > budget:
            return True
        if not reconcile():
            return False
    return True
