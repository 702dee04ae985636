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
    assert (
        "Stops after 60 min without activity (the server default): in 59\xa0minutes unless you use it."
        in page
    )
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


def page_of(client, user, project):
    user.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(user)
    return client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()


def test_the_users_default_overrides_the_server_and_the_page_says_so(user, api, client):
    short, short_sandbox = running(user, idle_for=timedelta(minutes=25))
    own, own_sandbox = running(user, idle_for=timedelta(minutes=25), idle_stop_minutes=30)
    response = api.put(reverse("api:idle-stop"), {"minutes": 20}, format="json")
    assert response.status_code == 200
    assert response.json() == {"minutes": 20, "server_default_minutes": 60.0, "effective_minutes": 20.0}
    assert api.get(reverse("api:idle-stop")).json()["minutes"] == 20
    sweep_idle_task()
    assert status_of(short_sandbox) == "STOPPING"
    assert status_of(own_sandbox) == "RUNNING"  # a project's own timeout wins over the user's default
    assert "Stops after 20 min without activity while running (your default)." in page_of(client, user, short)
    assert "Stops after 30 min without activity (set for this project): in" in page_of(client, user, own)
    assert api.get(reverse("api:project", args=[short.pk])).json()["idle_stop"] == {
        "minutes": 20,
        "source": "user",
    }
    assert api.get(reverse("api:project", args=[own.pk])).json()["idle_stop"]["source"] == "project"


def test_never_as_the_users_default_keeps_every_project_without_its_own_timeout(user, other_user, api):
    _, my_sandbox = running(user, idle_for=timedelta(days=2))
    _, shorter_sandbox = running(user, idle_for=timedelta(minutes=20), idle_stop_minutes=15)
    _, their_sandbox = running(other_user, idle_for=timedelta(days=2))
    assert api.put(reverse("api:idle-stop"), {"minutes": 0}, format="json").status_code == 200
    sweep_idle_task()
    assert status_of(my_sandbox) == "RUNNING"
    assert status_of(shorter_sandbox) == "STOPPING"  # its own 15 min wins over the user's "never"
    assert status_of(their_sandbox) == "STOPPING"  # another user's default is not touched


def test_the_settings_page_sets_the_users_default(user, client):
    user.save()
    client.force_login(user)
    page = client.get(reverse("dashboard:settings")).content.decode()
    assert "Server default (60 min)" in page
    response = client.post(reverse("dashboard:idle-stop-default"), {"minutes": "0"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.idle_stop_minutes == 0
    client.post(reverse("dashboard:idle-stop-default"), {"minutes": "-5"})
    user.refresh_from_db()
    assert user.idle_stop_minutes == 0  # refused, nothing changed
    client.post(reverse("dashboard:idle-stop-default"), {"minutes": "default"})
    user.refresh_from_db()
    assert user.idle_stop_minutes is None


def test_bad_user_defaults_are_refused(user, api):
    for bad in (-1, 10**6, "ten", True):
        response = api.put(reverse("api:idle-stop"), {"minutes": bad}, format="json")
        assert response.status_code == 400, bad
        assert set(response.json()) == {"code", "message", "details"}
    user.refresh_from_db()
    assert user.idle_stop_minutes is None


@pytest.mark.parametrize("path", ["api:project", "api:project-env", "api:project-tasks"])
def test_the_apis_own_reads_of_a_project_count_as_activity(user, api, path):
    project, sandbox = running(user, idle_for=timedelta(hours=3))
    assert api.get(reverse(path, args=[project.pk])).status_code == 200
    sweep_idle_task()
    assert status_of(sandbox) == "RUNNING"


def test_api_reads_write_activity_at_most_once_a_minute(user, api):
    project, sandbox = running(user, idle_for=timedelta(hours=3))
    url = reverse("api:project-env", args=[project.pk])
    api.get(url)
    first = Sandbox.objects.get(pk=sandbox.pk).last_activity_at
    for _ in range(3):
        api.get(url)
    assert Sandbox.objects.get(pk=sandbox.pk).last_activity_at == first


@pytest.mark.parametrize("stop_first", [True, False])
def test_an_idle_stop_and_a_start_at_the_same_moment_end_running(user, stop_first):
    """The user asks to start while the sweep is stopping the idle project: whichever takes the
    project's lock first, the sandbox ends up (going) running, as the user asked."""
    from core.audit import RECONCILER, Actor
    from core.errors import InvalidState
    from projects.services import project_start

    project, sandbox = running(user, idle_for=timedelta(hours=2))
    assert idle_candidates() == [project.pk]  # the sweep has read it as idle
    actor = Actor(user=user)
    if stop_first:
        assert stop_if_idle(project_id=project.pk, actor=RECONCILER) is True
        project_start(project=project, actor=actor)
        assert status_of(sandbox) == "STARTING"
    else:
        with pytest.raises(InvalidState):  # it is running: nothing to start, but the user is there
            project_start(project=project, actor=actor)
        assert stop_if_idle(project_id=project.pk, actor=RECONCILER) is False
        assert status_of(sandbox) == "RUNNING"
