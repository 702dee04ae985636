"""The tasks admin: lease state, attempts inline, the operator actions; the skills catalog."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from projects.models import ProjectTask, ProjectTaskAttempt, Skill
from tests.admin.test_actions import run
from tests.factories import ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:projects_projecttask_changelist")


@pytest.fixture
def tasks(db):
    sandbox = SandboxFactory(project=ProjectFactory(), status="RUNNING")
    make = lambda **kw: ProjectTask.objects.create(  # noqa: E731
        project=sandbox.project, sandbox=sandbox, type="INSTALL_SKILL", **kw
    )
    return {
        "pending": make(status="PENDING"),
        "failed": make(status="FAILED", attempts=3, error="exit 7: npm ERR!"),
        "leased": make(
            status="RUNNING", locked_until=timezone.now() + timedelta(minutes=2), lease_token=uuid.uuid4()
        ),
    }


def test_the_list_shows_lease_state_and_the_page_the_attempts(su_client, tasks):
    page = su_client.get(TASKS).content.decode()
    assert "held until" in page and "exit 7: npm ERR!" in page
    ProjectTaskAttempt.objects.create(
        task=tasks["failed"], number=1, started_at=timezone.now(), exit_code=7, lease_token=uuid.uuid4()
    )
    detail = su_client.get(reverse("admin:projects_projecttask_change", args=[tasks["failed"].pk]))
    assert detail.status_code == 200 and "Project task attempts" in detail.content.decode()


def test_cancel_retry_and_release_lease(su_client, tasks):
    everything = list(tasks.values())
    assert run(su_client, TASKS, "cancel", everything)[0].startswith("1 task cancelled; 2 skipped")
    assert run(su_client, TASKS, "retry", everything)[0].startswith("1 task queued again; 2 skipped")
    assert run(su_client, TASKS, "release_lease", [tasks["leased"]])[0] == "1 task released."
    states = {name: ProjectTask.objects.get(pk=t.pk) for name, t in tasks.items()}
    assert states["pending"].status == "CANCELLED"
    assert (states["failed"].status, states["failed"].attempts) == ("PENDING", 0)
    assert (states["leased"].lease_token, states["leased"].locked_until) == (None, None)


def test_operators_manage_the_catalog(su_client):
    response = su_client.post(
        reverse("admin:projects_skill_add"),
        {
            "name": "Lint",
            "slug": "lint",
            "description": "",
            "source_url": "https://example.test/lint",
            "install_command": "echo on",
            "uninstall_command": "echo off",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Skill.objects.filter(slug="lint", enabled=True).exists()
    assert su_client.get(reverse("admin:projects_skill_changelist")).status_code == 200
