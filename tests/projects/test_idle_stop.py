"""Idle auto-stop that never stops someone who is working: the sweep stops a RUNNING project whose
sandbox has had no activity for its timeout, with reason `idle` on the timeline; a heartbeat from the
sandbox, a dashboard visit, "keep running" or a "never" override keep it running; the decision is taken
again under the project's lock, so the user's latest action wins. The clock is shifted by writing the
activity times into the past (real PostgreSQL, the sweep task called in-process)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from projects.models import Project
from projects.selectors import idle_candidates
from projects.services import HEARTBEAT_TOKEN, stop_if_idle
from reconcile.tasks import sweep_idle_task
from sandboxes.models import ResourceEvent, Sandbox
from tests.factories import EnvironmentFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_hour_default(settings):
    settings.IDLE_STOP_MINUTES = 60
    settings.RECONCILE_KICK_ON_COMMIT = False


def running(owner, *, idle_for, **project):
    project = ProjectFactory(owner=owner, status="RUNNING", **project)
    sandbox = SandboxFactory(project=project, status="RUNNING")
    Sandbox.objects.filter(pk=sandbox.pk).update(last_activity_at=timezone.now() - idle_for)
    EnvironmentFactory(project=project, key=HEARTBEAT_TOKEN, value="hb-secret-token", is_system=True)
    return project, sandbox


def status_of(sandbox):
    return Sandbox.objects.get(pk=sandbox.pk).status


def test_an_idle_sandbox_is_stopped_with_reason_idle(user):
    project, sandbox = running(user, idle_for=timedelta(minutes=61))
    _busy, busy_sandbox = running(user, idle_for=timedelta(minutes=59))
    sweep_idle_task()
    assert status_of(sandbox) == "STOPPING"
    assert Project.objects.get(pk=project.pk).status == "STOPPING"
    event = ResourceEvent.objects.get(resource_id=sandbox.pk, to_status="STOPPING")
    assert (event.reason, event.actor) == ("idle", "reconciler")
    assert event.message == "Stopped after 60 min without activity."
    assert status_of(busy_sandbox) == "RUNNING"


def test_a_heartbeat_from_the_sandbox_keeps_it_running(user, anon):
    _, sandbox = running(user, idle_for=timedelta(hours=3))
    url = reverse("api:sandbox-heartbeat", args=[sandbox.pk])
    wrong = anon.post(url, HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 404 and wrong.json()["code"] == "not_found"
    assert anon.post(url, HTTP_AUTHORIZATION="Bearer hb-secret-token").status_code == 204
    sweep_idle_task()
    assert status_of(sandbox) == "RUNNING"


def test_a_dashboard_visit_keeps_it_running_and_the_page_says_when_it_stops(user, client):
    project, sandbox = running(user, idle_for=timedelta(hours=3))
    user.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(user)
    page = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert "Stops after 60 min without activity: in 59\xa0minutes unless you use it." in page
    sweep_idle_task()
    assert status_of(sandbox) == "RUNNING"


def test_never_means_never(user, api):
    project, sandbox = running(user, idle_for=timedelta(days=3))
    response = api.put(reverse("api:project-idle-stop", args=[project.pk]), {"minutes": 0}, format="json")
    assert response.status_code == 200 and response.json()["idle_stop_minutes"] == 0
    sweep_idle_task()
    assert status_of(sandbox) == "RUNNING"


def test_a_project_override_shortens_the_default(user):
    _, sandbox = running(user, idle_for=timedelta(minutes=20), idle_stop_minutes=15)
    sweep_idle_task()
    assert status_of(sandbox) == "STOPPING"


def test_activity_between_the_sweeps_read_and_its_stop_wins(user, client):
    project, sandbox = running(user, idle_for=timedelta(hours=2))
    assert idle_candidates() == [project.pk]  # the sweep has read it as idle...
    user.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(user)
    client.post(reverse("dashboard:keep-running", args=[project.pk]))  # ...then the user acts
    from core.audit import RECONCILER

    assert stop_if_idle(project_id=project.pk, actor=RECONCILER) is False
    assert status_of(sandbox) == "RUNNING"


def test_bad_idle_settings_are_refused_and_other_users_projects_are_not_found(user, other_user, api):
    project, _ = running(user, idle_for=timedelta(0))
    url = reverse("api:project-idle-stop", args=[project.pk])
    for bad in (-1, 10**6, "ten", True):
        response = api.put(url, {"minutes": bad}, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()) == {"code", "message", "details"}
    theirs, _ = running(other_user, idle_for=timedelta(0))
    assert (
        api.put(reverse("api:project-idle-stop", args=[theirs.pk]), {"minutes": 5}, format="json").status_code
        == 404
    )
    assert Project.objects.get(pk=theirs.pk).idle_stop_minutes is None
