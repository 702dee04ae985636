"""Environment variables: batch upsert and delete, validation, system rows, and the effect on sandboxes."""

import pytest

from projects.models import Environment
from sandboxes.models import Sandbox
from tests.factories import EnvironmentFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user):
    project = ProjectFactory(owner=user, status="RUNNING")
    EnvironmentFactory(
        project=project, key="TTYD_ACCESS_TOKEN", value="tok", is_secret=True, is_system=True, category="ttyd"
    )
    return project


def put(api, project, *variables):
    return api.put(f"/api/v1/projects/{project.pk}/env", {"variables": list(variables)}, format="json")


def test_upsert_creates_and_updates_and_masks_secrets(api, project):
    response = put(
        api,
        project,
        {"key": "API_URL", "value": "https://x"},
        {"key": "STRIPE_KEY", "value": "sk_live_1", "is_secret": True},
    )
    assert response.status_code == 200, response.json()
    shown = {e["key"]: e["value"] for e in response.json()}
    assert shown == {"TTYD_ACCESS_TOKEN": "••••••••", "API_URL": "https://x", "STRIPE_KEY": "••••••••"}
    assert "sk_live_1" not in response.content.decode()
    response = put(api, project, {"key": "API_URL", "value": "https://y"})
    assert {e["key"]: e["value"] for e in response.json()}["API_URL"] == "https://y"
    assert Environment.objects.get(project=project, key="STRIPE_KEY").value == "sk_live_1"


def test_running_sandboxes_go_to_updating_with_a_new_generation(api, user, project):
    running = SandboxFactory(project=project, status="RUNNING", generation=3)
    stopped = SandboxFactory(project=project, status="STOPPED", generation=3)
    assert put(api, project, {"key": "A", "value": "1"}).status_code == 200
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert (running.status, running.generation) == ("UPDATING", 4)
    # a stopped sandbox picks the change up when it starts
    assert (stopped.status, stopped.generation) == ("STOPPED", 4)
    project.refresh_from_db()
    assert project.status == "UPDATING"


def test_an_unchanged_value_does_not_restart_anything(api, project):
    sandbox = SandboxFactory(project=project, status="RUNNING")
    put(api, project, {"key": "A", "value": "1"})
    Sandbox.objects.filter(pk=sandbox.pk).update(status="RUNNING")
    generation = Sandbox.objects.get(pk=sandbox.pk).generation
    put(api, project, {"key": "A", "value": "1"})
    assert Sandbox.objects.get(pk=sandbox.pk).generation == generation


@pytest.mark.parametrize(
    ("variable", "code"),
    [
        ({"key": "1ABC", "value": "x"}, "invalid_key"),
        ({"key": "A-B", "value": "x"}, "invalid_key"),
        ({"key": "", "value": "x"}, "invalid_key"),
        ({"key": "A" * 257, "value": "x"}, "invalid_key"),
        ({"key": "A", "value": "x" * (32 * 1024 + 1)}, "value_too_large"),
        ({"key": "A", "value": 5}, "invalid_value"),
        ({"key": "A", "value": "x", "is_secret": "yes"}, "invalid_value"),
        ({"key": "A", "value": "x", "color": "red"}, "invalid"),
        ({"key": "TTYD_ACCESS_TOKEN", "value": "mine"}, "system_variable"),
    ],
)
def test_a_bad_variable_rejects_the_whole_batch(api, project, variable, code):
    response = put(api, project, {"key": "GOOD", "value": "kept?"}, variable)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert not Environment.objects.filter(key="GOOD").exists()
    assert Environment.objects.get(project=project, key="TTYD_ACCESS_TOKEN").value == "tok"


def test_duplicate_keys_in_a_batch_are_refused(api, project):
    response = put(api, project, {"key": "A", "value": "1"}, {"key": "A", "value": "2"})
    assert response.status_code == 400
    assert response.json()["code"] == "duplicate_key"


def test_an_empty_batch_deletes_nothing(api, project):
    """The reference wiped every variable (built-ins included) on an empty batch; we do nothing."""
    response = put(api, project)
    assert response.status_code == 200
    assert Environment.objects.filter(project=project).count() == 1


def test_the_largest_allowed_value_is_accepted(api, project):
    assert put(api, project, {"key": "BIG", "value": "x" * 32 * 1024}).status_code == 200


def test_delete_removes_a_variable_and_updates_running_sandboxes(api, project):
    sandbox = SandboxFactory(project=project, status="RUNNING")
    EnvironmentFactory(project=project, key="OLD", value="1")
    response = api.delete(f"/api/v1/projects/{project.pk}/env/OLD")
    assert response.status_code == 204
    assert not Environment.objects.filter(project=project, key="OLD").exists()
    sandbox.refresh_from_db()
    assert sandbox.status == "UPDATING"


def test_delete_refuses_system_rows_and_unknown_keys(api, project):
    response = api.delete(f"/api/v1/projects/{project.pk}/env/TTYD_ACCESS_TOKEN")
    assert response.status_code == 400
    assert response.json()["code"] == "system_variable"
    assert Environment.objects.filter(project=project, key="TTYD_ACCESS_TOKEN").exists()
    assert api.delete(f"/api/v1/projects/{project.pk}/env/NOPE").status_code == 404


def test_put_requires_a_variables_list(api, project):
    response = api.put(f"/api/v1/projects/{project.pk}/env", {"variables": "A=1"}, format="json")
    assert response.status_code == 400
    response = api.put(f"/api/v1/projects/{project.pk}/env", {"vars": []}, format="json")
    assert response.status_code == 400
