"""Skills and tasks through the API: fan-out, the latest intent, per-project state, ownership, 409s."""

import pytest

from core.audit import Actor
from projects.models import Project, ProjectTask, Skill, TaskStatus, UserSkill
from projects.services import project_create
from tests.factories import KubeconfigFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def skill(db):
    return Skill.objects.create(
        slug="marker",
        name="Marker",
        description="Writes a marker file.",
        install_command="echo installed > .marker",
        uninstall_command="rm -f .marker",
    )


def projects_of(user, n):
    sandboxes = []
    for i in range(n):
        project = ProjectFactory(owner=user, name=f"P{i}", status="RUNNING")
        sandboxes.append(SandboxFactory(project=project, status="RUNNING"))
    return sandboxes


def test_the_seeded_catalog_has_frontend_design(api):
    body = api.get("/api/v1/skills").json()
    [entry] = [s for s in body if s["slug"] == "frontend-design"]
    assert entry["enabled"] is False and entry["source_url"] == "https://github.com/anthropics/skills"


def test_enable_fans_out_one_install_per_project_with_the_command_snapshot(api, user, skill):
    projects_of(user, 3)
    response = api.put(f"/api/v1/me/skills/{skill.pk}")
    assert response.status_code == 202, response.json()
    assert response.json()["enabled"] is True
    tasks = ProjectTask.objects.filter(skill=skill)
    assert tasks.count() == 3
    assert {t.type for t in tasks} == {"INSTALL_SKILL"}
    skill.install_command = "echo changed"
    skill.save()
    # enabling again changes nothing; the snapshot is what runs
    assert api.put(f"/api/v1/me/skills/{skill.pk}").status_code == 202
    assert ProjectTask.objects.filter(skill=skill).count() == 3
    assert {t.payload["command"] for t in tasks} == {"echo installed > .marker"}
    assert [s["enabled"] for s in api.get("/api/v1/skills").json() if s["slug"] == "marker"] == [True]


def test_enabling_for_200_projects_is_one_request_with_constant_queries(
    api, user, skill, django_assert_max_num_queries
):
    projects_of(user, 200)
    with django_assert_max_num_queries(15):
        response = api.put(f"/api/v1/me/skills/{skill.pk}")
    assert response.status_code == 202
    assert ProjectTask.objects.filter(skill=skill, type="INSTALL_SKILL").count() == 200
    with django_assert_max_num_queries(15):
        assert api.delete(f"/api/v1/me/skills/{skill.pk}").status_code == 202


def test_disable_cancels_pending_installs_and_uninstalls_where_one_ran(api, user, skill):
    ran, pending = projects_of(user, 2)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    ProjectTask.objects.filter(project=ran.project).update(status="SUCCEEDED", started_at="2026-01-01T00:00Z")
    assert api.delete(f"/api/v1/me/skills/{skill.pk}").status_code == 202
    assert not UserSkill.objects.exists()
    assert ProjectTask.objects.get(project=pending.project, type="INSTALL_SKILL").status == "CANCELLED"
    assert not ProjectTask.objects.filter(project=pending.project, type="UNINSTALL_SKILL").exists()
    uninstall = ProjectTask.objects.get(project=ran.project, type="UNINSTALL_SKILL")
    assert uninstall.payload["command"] == "rm -f .marker"
    states = {s["slug"]: s["state"] for s in api.get(f"/api/v1/projects/{ran.project.pk}/skills").json()}
    assert states["marker"] == "uninstalling"
    states = {s["slug"]: s["state"] for s in api.get(f"/api/v1/projects/{pending.project.pk}/skills").json()}
    assert states["marker"] == "not_installed"


def test_re_enabling_after_an_uninstall_reinstalls(api, user, skill):
    [sandbox] = projects_of(user, 1)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    ProjectTask.objects.update(status="SUCCEEDED", started_at="2026-01-01T00:00Z")
    api.delete(f"/api/v1/me/skills/{skill.pk}")
    ProjectTask.objects.filter(type="UNINSTALL_SKILL").update(status="SUCCEEDED")
    api.put(f"/api/v1/me/skills/{skill.pk}")
    installs = ProjectTask.objects.filter(project=sandbox.project, type="INSTALL_SKILL")
    assert installs.count() == 2 and installs.filter(status="PENDING").count() == 1
    states = {s["slug"]: s["state"] for s in api.get(f"/api/v1/projects/{sandbox.project.pk}/skills").json()}
    assert states["marker"] == "installing"


def test_enable_then_disable_before_anything_ran_cancels_the_uninstall_too(api, user, skill):
    projects_of(user, 1)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    ProjectTask.objects.update(status="SUCCEEDED", started_at="2026-01-01T00:00Z")
    api.delete(f"/api/v1/me/skills/{skill.pk}")
    api.put(f"/api/v1/me/skills/{skill.pk}")  # the pending uninstall is superseded
    assert ProjectTask.objects.get(type="UNINSTALL_SKILL").status == "CANCELLED"


def test_a_new_project_gets_install_tasks_in_the_same_transaction(user, skill, api):
    KubeconfigFactory(user=user)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    project = project_create(owner=user, name="Fresh", actor=Actor(user=user))
    [task] = ProjectTask.objects.filter(project=project)
    assert (task.type, task.status, task.skill_id) == ("INSTALL_SKILL", "PENDING", skill.pk)
    assert task.sandbox_id == project.sandboxes.get().pk


def test_tasks_list_cancel_and_retry(api, user, skill):
    [sandbox] = projects_of(user, 1)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    task = ProjectTask.objects.get()
    url = f"/api/v1/projects/{sandbox.project.pk}/tasks"
    [row] = api.get(url).json()["results"]
    assert (row["type"], row["status"], row["skill"], row["can_cancel"]) == (
        "INSTALL_SKILL",
        "PENDING",
        "marker",
        True,
    )

    retry = api.post(f"{url}/{task.pk}/retry")
    assert retry.status_code == 409 and retry.json()["code"] == "task_not_retryable"
    assert "PENDING" in retry.json()["message"]
    cancel = api.post(f"{url}/{task.pk}/cancel")
    assert cancel.status_code == 202 and cancel.json()["status"] == "CANCELLED"
    again = api.post(f"{url}/{task.pk}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "task_not_cancellable"

    ProjectTask.objects.filter(pk=task.pk).update(status="FAILED", attempts=3, error="exit 1: boom")
    retried = api.post(f"{url}/{task.pk}/retry")
    assert retried.status_code == 202, retried.json()
    task.refresh_from_db()
    assert (task.status, task.attempts, task.error) == ("PENDING", 0, "")


def test_retrying_an_install_of_a_disabled_skill_is_refused(api, user, skill):
    [sandbox] = projects_of(user, 1)
    api.put(f"/api/v1/me/skills/{skill.pk}")
    task = ProjectTask.objects.get()
    ProjectTask.objects.filter(pk=task.pk).update(status="FAILED")
    api.delete(f"/api/v1/me/skills/{skill.pk}")
    response = api.post(f"/api/v1/projects/{sandbox.project.pk}/tasks/{task.pk}/retry")
    assert response.status_code == 409 and response.json()["code"] == "task_superseded"
    assert ProjectTask.objects.get(pk=task.pk).status == "FAILED"


def test_another_users_tasks_and_skills_are_404(api, other_user, skill):
    [sandbox] = projects_of(other_user, 1)
    task = ProjectTask.objects.create(project=sandbox.project, sandbox=sandbox, type="INSTALL_SKILL")
    base = f"/api/v1/projects/{sandbox.project.pk}"
    for response in (
        api.get(f"{base}/tasks"),
        api.get(f"{base}/skills"),
        api.post(f"{base}/tasks/{task.pk}/cancel"),
        api.post(f"{base}/tasks/{task.pk}/retry"),
    ):
        assert response.status_code == 404
        assert set(response.json()) >= {"code", "message", "details"}
    assert ProjectTask.objects.get(pk=task.pk).status == TaskStatus.PENDING


@pytest.mark.parametrize("bad", ["nope", "00000000-0000-0000-0000-000000000000", "1" * 40])
def test_bad_ids_are_404_with_the_error_shape(api, user, skill, bad):
    [sandbox] = projects_of(user, 1)
    for response in (
        api.put(f"/api/v1/me/skills/{bad}"),
        api.delete(f"/api/v1/me/skills/{bad}"),
        api.post(f"/api/v1/projects/{sandbox.project.pk}/tasks/{bad}/cancel"),
    ):
        assert response.status_code == 404, response.content
        body = response.json()
        assert set(body) >= {"code", "message", "details"}
    assert not ProjectTask.objects.exists()


def test_a_withdrawn_skill_cannot_be_enabled(api, user, skill):
    skill.enabled = False
    skill.save()
    assert api.put(f"/api/v1/me/skills/{skill.pk}").status_code == 404
    assert "marker" not in [s["slug"] for s in api.get("/api/v1/skills").json()]
    assert Project.objects.count() == 0
