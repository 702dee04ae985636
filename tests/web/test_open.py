"""Start on open: the project page's "Open" of a stopped sandbox starts the project (with the action
rules, quotas and rate limits of its Start button) and shows the progress; the target is reached only
once the sandbox is RUNNING."""

import pytest
from django.urls import reverse

from core.audit import SYSTEM
from projects import services
from projects.models import Project, Quota
from sandboxes.models import Sandbox
from tests.factories import KubeconfigFactory, UserFactory
from tests.web.test_views import login, set_status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kicks(settings):
    settings.RECONCILE_KICK_ON_COMMIT = False


@pytest.fixture
def owner(db):
    user = UserFactory()
    KubeconfigFactory(user=user)
    return user


@pytest.fixture
def client(owner):
    return login(owner)


@pytest.fixture
def stopped(owner):
    project = services.project_create(owner=owner, name="Sleepy", actor=SYSTEM)
    set_status(project, "STOPPED")
    return project


def sandbox_of(project):
    return Sandbox.objects.get(project=project)


def open_url(project, target):
    return reverse("dashboard:open", args=[project.pk, target])


def test_the_page_offers_start_and_open_on_a_stopped_project(client, stopped):
    page = client.get(reverse("dashboard:detail", args=[stopped.pk])).content.decode()
    assert page.count(f'action="{open_url(stopped, "terminal")}"') == 2  # panel head and Access list
    assert f'action="{open_url(stopped, "files")}"' in page and f'action="{open_url(stopped, "app")}"' in page
    assert "Start and open" in page


@pytest.mark.parametrize("target", ["terminal", "files", "app"])
def test_open_starts_a_stopped_project_and_goes_to_the_target_only_once_running(client, stopped, target):
    response = client.post(open_url(stopped, target))
    assert response.status_code == 302 and response["Location"] == open_url(stopped, target)
    assert sandbox_of(stopped).status == "STARTING"
    page = client.get(open_url(stopped, target))
    assert page.status_code == 200  # the progress page, not the target: it is not serving yet
    html = page.content.decode()
    assert "Starting your sandbox" in html and "opens here as soon as the sandbox is running" in html
    state = client.get(open_url(stopped, target), HTTP_ACCEPT="application/json").json()
    assert state["ready"] is False and state["waits"] is True and state["status"] == "STARTING"

    set_status(stopped, "RUNNING")
    assert client.get(open_url(stopped, target), HTTP_ACCEPT="application/json").json()["ready"] is True
    ready = client.get(open_url(stopped, target))
    sandbox = sandbox_of(stopped)
    expected = {
        "terminal": reverse("dashboard:terminal-open", args=[stopped.pk]),
        "files": sandbox.filebrowser_url,
        "app": sandbox.public_url,
    }[target]
    assert ready.status_code == 302 and ready["Location"] == expected


def test_a_start_refused_by_the_quota_says_so_plainly(client, owner, stopped):
    Quota.objects.create(user=owner, max_running_sandboxes=0)
    response = client.post(open_url(stopped, "terminal"))
    assert response.status_code == 409
    html = response.content.decode()
    assert "Sleepy was not started. Quota exceeded: running 0 of 0 in use, this needs 1 more." in html
    assert "ask an operator to raise your limit" in html
    assert "Starting your sandbox" not in html
    assert sandbox_of(stopped).status == "STOPPED"


def test_a_project_being_deleted_is_not_opened_nor_started(client, stopped):
    set_status(stopped, "TERMINATING")
    response = client.post(open_url(stopped, "terminal"))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The sandbox is TERMINATING: the terminal cannot be opened now." in page
    assert "Start and open" not in page
    assert sandbox_of(stopped).status == "TERMINATING"


def test_a_get_never_starts_anything(client, stopped):
    page = client.get(open_url(stopped, "app")).content.decode()
    assert sandbox_of(stopped).status == "STOPPED"
    assert "The sandbox is STOPPED: the app cannot be opened now." in page
    assert "Start and open" in page  # a button (a post) does


def test_unknown_targets_and_other_users_projects_are_404(stopped):
    other = login(UserFactory())
    assert other.post(open_url(stopped, "terminal")).status_code == 404
    assert Project.objects.get(pk=stopped.pk).status == "STOPPED"
    assert (
        login(stopped.owner).get(reverse("dashboard:detail", args=[stopped.pk]) + "open/nothing").status_code
        == 404
    )


def test_a_throttled_open_keeps_the_project_as_it_is(client, stopped, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "lifecycle_write": "1/minute"}
    assert client.post(reverse("dashboard:stop", args=[stopped.pk])).status_code == 302  # spends it
    response = client.post(open_url(stopped, "terminal"))
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many changes in a short time" in response.content.decode()
    assert sandbox_of(stopped).status == "STOPPED"
