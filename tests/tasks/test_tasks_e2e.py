"""Skills installed for real: through the Celery worker, the gateway's exec and kubesim's pods."""

import itertools
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core.audit import SYSTEM
from projects.models import Project, ProjectTask, ProjectTaskAttempt, Skill
from projects.services import project_start, project_stop
from reconcile import engine, project_tasks, runner
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from userconfig.models import ConfigKey, UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MARKER = ".claude/skills/marker/SKILL.md"


def make_skill(install=None, uninstall=None):
    return Skill.objects.create(
        slug="marker",
        name="Marker",
        install_command=install or f"mkdir -p .claude/skills/marker && echo installed > {MARKER}",
        uninstall_command=uninstall or "rm -rf .claude/skills/marker",
    )


def create(api, name):
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    assert response.status_code == 202, response.json()
    return Project.objects.get(pk=response.json()["id"])


def running(project):
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", timeout=60, what="RUNNING")
    return Sandbox.objects.get(project=project)


def in_pod(sandbox, script):
    """Run a script in the sandbox's container through the gateway (as a user's terminal would)."""
    config = UserConfig.objects.get(user=sandbox.project.owner, key=ConfigKey.KUBECONFIG)
    kube = runner.client_for(config).for_step(sandbox.k8s_namespace)
    from reconcile.kube.client import sh

    return kube.exec(f"{sandbox.k8s_name}-0", sh(script), container=sandbox.k8s_name, timeout=20)


def has_marker(sandbox):
    return in_pod(sandbox, f'test -f "$HOME/next/{MARKER}"').exit_code == 0


def task_status(project, type="INSTALL_SKILL"):
    task = ProjectTask.objects.filter(project=project, type=type).order_by("-created_at").first()
    return task.status if task else None


def test_enable_installs_everywhere_a_stopped_project_waits_and_disable_removes(cluster_api, beat):
    skill = make_skill()
    up, down = create(cluster_api, "Up"), create(cluster_api, "Down")
    up_sandbox, down_sandbox = running(up), running(down)
    project_stop(project=down, actor=SYSTEM)
    wait_for(lambda: Project.objects.get(pk=down.pk).status == "STOPPED", timeout=60, what="STOPPED")

    assert cluster_api.put(f"/api/v1/me/skills/{skill.pk}").status_code == 202
    wait_for(lambda: task_status(up) == "SUCCEEDED", timeout=60, what="installed in the running project")
    assert has_marker(up_sandbox)
    wait_for(lambda: task_status(down) == "WAITING_FOR_PREREQUISITES", what="the stopped project waits")
    waiting = ProjectTask.objects.get(project=down)
    assert "STOPPED" in waiting.status_reason and waiting.attempts == 0
    assert Sandbox.objects.get(pk=down_sandbox.pk).status == "STOPPED"  # never started for a task

    project_start(project=down, actor=SYSTEM)
    wait_for(lambda: task_status(down) == "SUCCEEDED", timeout=90, what="installed after the start")
    assert has_marker(Sandbox.objects.get(pk=down_sandbox.pk))
    states = {s["slug"]: s["state"] for s in cluster_api.get(f"/api/v1/projects/{up.pk}/skills").json()}
    assert states["marker"] == "installed"
    [attempt] = ProjectTaskAttempt.objects.filter(task__project=up)
    assert attempt.exit_code == 0 and attempt.duration is not None

    assert cluster_api.delete(f"/api/v1/me/skills/{skill.pk}").status_code == 202
    for project in (up, down):
        wait_for(
            lambda p=project: task_status(p, "UNINSTALL_SKILL") == "SUCCEEDED", timeout=60, what="uninstalled"
        )
    assert not has_marker(up_sandbox)
    assert not has_marker(Sandbox.objects.get(pk=down_sandbox.pk))


def test_a_failing_install_is_retried_with_backoff_then_failed_with_its_stderr(
    cluster_api, cluster_user, beat, settings, client
):
    settings.TASK_BACKOFF_BASE_SECONDS = 0.3
    settings.TASK_MAX_ATTEMPTS = 3
    skill = make_skill(install='echo "npm ERR! 404 skill-not-found" >&2; echo partial; exit 7')
    project = create(cluster_api, "Broken")
    running(project)
    cluster_api.put(f"/api/v1/me/skills/{skill.pk}")
    wait_for(lambda: task_status(project) == "FAILED", timeout=90, what="FAILED after its attempts")
    task = ProjectTask.objects.get(project=project)
    assert task.attempts == 3
    assert task.error.startswith("Failed after 3 attempts: exit 7: npm ERR! 404 skill-not-found")
    attempts = list(ProjectTaskAttempt.objects.filter(task=task).order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert {a.exit_code for a in attempts} == {7}
    assert "partial" in attempts[0].output and "npm ERR!" in attempts[0].output
    for before, after in itertools.pairwise(attempts):
        assert after.started_at - before.finished_at >= timedelta(seconds=0.15)  # backed off (half of base)

    [row] = cluster_api.get(f"/api/v1/projects/{project.pk}/tasks").json()["results"]
    assert row["status"] == "FAILED" and "npm ERR! 404 skill-not-found" in row["last_error"]
    assert row["can_retry"] is True and len(row["attempt_log"]) == 3
    states = {s["slug"]: s for s in cluster_api.get(f"/api/v1/projects/{project.pk}/skills").json()}
    assert states["marker"]["state"] == "failed"

    cluster_user.save()
    client.force_login(cluster_user)
    page = client.get(reverse("dashboard:project-tasks", args=[project.pk])).content.decode()
    assert "npm ERR! 404 skill-not-found" in page and "Retry" in page


def test_two_workers_racing_never_run_one_attempt_twice(cluster_api, cluster_user, settings):
    """Two real workers (threads with their own connections) claim the same due task at once, again
    and again; then one loses its lease mid-run and its late result is dropped."""
    skill = make_skill(install='echo run >> "$HOME/next/runs.txt"')
    project = create(cluster_api, "Race")
    # no beat and no kicks here: only our two workers touch the task
    settings.RECONCILE_KICK_ON_COMMIT = False
    from reconcile import runner as resource_runner

    wait_for(
        lambda: (
            resource_runner.reconcile(Sandbox) is not None
            and Project.objects.get(pk=project.pk).status == "RUNNING"
        ),
        timeout=60,
        what="RUNNING",
    )
    sandbox = Sandbox.objects.get(project=project)
    cluster_api.put(f"/api/v1/me/skills/{skill.pk}")
    task = ProjectTask.objects.get(project=project)

    barrier = threading.Barrier(2)
    claimed = []

    def worker():
        try:
            barrier.wait()
            claimed.append(project_tasks.reconcile(ids=[task.pk]))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [0, 1]
    task.refresh_from_db()
    assert task.status == "SUCCEEDED" and task.attempts == 1
    assert ProjectTaskAttempt.objects.filter(task=task).count() == 1
    assert in_pod(sandbox, 'cat "$HOME/next/runs.txt"').stdout.count("run") == 1

    # A worker claims and is lost (its lease expires): another worker runs attempt 2; the first
    # worker's late record is dropped, and its attempt number can never be started again.
    ProjectTask.objects.filter(pk=task.pk).update(status="PENDING", attempts=1)
    [lost] = engine.claim(project_tasks.QUEUE, ids=[task.pk], limit=1, lease=60)
    ProjectTask.objects.filter(pk=task.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert project_tasks.reconcile(ids=[task.pk]) == 1
    assert project_tasks._start(lost) is None  # attempt 2 already ran: never twice
    assert project_tasks.record(lost, project_tasks._fail("late")) is None
    task.refresh_from_db()
    assert (task.status, task.attempts, task.error) == ("SUCCEEDED", 2, "")
    assert list(ProjectTaskAttempt.objects.filter(task=task).values_list("number", flat=True)) == [1, 2]
    assert in_pod(sandbox, 'cat "$HOME/next/runs.txt"').stdout.count("run") == 2
