"""Sandbox sizes: chosen at creation, changed later with POST /api/v1/sandboxes/{id}/resize."""

import pytest
from django.urls import reverse

from core.audit import SYSTEM
from core.models import AuditEntry
from projects import services
from sandboxes.models import ResourceEvent, ResourceStatus, Sandbox
from tests.factories import KubeconfigFactory

pytestmark = pytest.mark.django_db

SIZES = {
    "tiny": {
        "cpu_request": "10m",
        "cpu_limit": "500m",
        "memory_request": "16Mi",
        "memory_limit": "512Mi",
        "storage_size": "5Gi",
    },
    "small": {
        "cpu_request": "20m",
        "cpu_limit": "2000m",
        "memory_request": "25Mi",
        "memory_limit": "4096Mi",
        "storage_size": "10Gi",
    },
    "big": {
        "cpu_request": "1",
        "cpu_limit": "4",
        "memory_request": "2Gi",
        "memory_limit": "8Gi",
        "storage_size": "20Gi",
    },
}


def resources(sandbox: Sandbox) -> dict[str, str]:
    return {f: getattr(sandbox, f) for f in services.SIZE_FIELDS}


def create(api, name="App", **extra):
    return api.post("/api/v1/projects", {"name": name, **extra}, format="json")


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_each_size_at_creation_sets_its_requests_and_limits(api, kubeconfig, settings, size):
    response = create(api, size=size)
    assert response.status_code == 202, response.json()
    [body] = response.json()["sandboxes"]
    sandbox = Sandbox.objects.get(pk=body["id"])
    assert sandbox.size == body["size"] == size
    assert resources(sandbox) == settings.SANDBOX_SIZES[size]
    assert {f: body[f] for f in services.SIZE_FIELDS} == settings.SANDBOX_SIZES[size]


def test_the_default_size_is_the_smallest_and_matches_the_reference(api, kubeconfig):
    sandbox = Sandbox.objects.get(pk=create(api).json()["sandboxes"][0]["id"])
    assert sandbox.size == "small"
    assert resources(sandbox) == {
        "cpu_request": "20m",
        "cpu_limit": "2000m",
        "memory_request": "25Mi",
        "memory_limit": "4096Mi",
        "storage_size": "10Gi",
    }


@pytest.mark.parametrize("size", ["huge", "SMALL", "x" * 100])
def test_unknown_size_at_creation_is_400_and_stores_nothing(api, kubeconfig, size):
    response = create(api, size=size)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "invalid_size"
    assert body["details"] == {"sizes": ["small", "medium", "large"]}
    assert not Sandbox.objects.exists()


def resize(api, sandbox, size):
    return api.post(f"/api/v1/sandboxes/{sandbox.pk}/resize", {"size": size}, format="json")


def test_resize_of_a_running_sandbox_rolls_it(api, user, kubeconfig, settings):
    project = services.project_create(owner=user, name="Shop", actor=SYSTEM)
    sandbox = project.sandboxes.get()
    Sandbox.objects.filter(pk=sandbox.pk).update(status=ResourceStatus.RUNNING, observed_generation=1)
    response = resize(api, sandbox, "medium")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["size"] == "medium" and body["status"] == "UPDATING" and body["generation"] == 2
    sandbox.refresh_from_db()
    assert resources(sandbox) == settings.SANDBOX_SIZES["medium"]
    event = ResourceEvent.objects.filter(resource_id=sandbox.pk).first()
    assert (event.from_status, event.to_status, event.reason) == ("RUNNING", "UPDATING", "resized")
    assert AuditEntry.objects.filter(action="sandbox.resize", target_id=str(sandbox.pk)).exists()
    # the same size again changes nothing
    assert resize(api, sandbox, "medium").json()["generation"] == 2


def test_resize_of_a_stopped_sandbox_waits_for_its_start(api, user, kubeconfig):
    project = services.project_create(owner=user, name="Shop", actor=SYSTEM)
    sandbox = project.sandboxes.get()
    Sandbox.objects.filter(pk=sandbox.pk).update(status=ResourceStatus.STOPPED)
    body = resize(api, sandbox, "large").json()
    assert (body["status"], body["generation"], body["cpu_request"]) == ("STOPPED", 2, "2")
    assert ResourceEvent.objects.filter(resource_id=sandbox.pk, reason="resized").exists()


def test_storage_cannot_shrink(api, user, kubeconfig, settings):
    settings.SANDBOX_SIZES = SIZES
    project = services.project_create(owner=user, name="Shop", size="small", actor=SYSTEM)
    sandbox = project.sandboxes.get()
    response = resize(api, sandbox, "tiny")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "storage_cannot_shrink"
    assert body["details"] == {"storage_size": "10Gi", "asked": "5Gi"}
    sandbox.refresh_from_db()
    assert (sandbox.size, sandbox.generation) == ("small", 1)
    assert resize(api, sandbox, "big").status_code == 202  # growing is fine
    sandbox.refresh_from_db()
    assert sandbox.storage_size == "20Gi"


def test_resize_another_users_sandbox_is_404(api, other_user):
    KubeconfigFactory(user=other_user)
    theirs = services.project_create(owner=other_user, name="Theirs", actor=SYSTEM).sandboxes.get()
    response = resize(api, theirs, "medium")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.size == "small"


@pytest.mark.parametrize("payload", [{"size": "huge"}, {"size": ""}, {}, {"size": "small", "extra": 1}])
def test_resize_bad_input_is_400_with_the_usual_body(api, user, kubeconfig, payload):
    sandbox = services.project_create(owner=user, name="Shop", actor=SYSTEM).sandboxes.get()
    response = api.post(f"/api/v1/sandboxes/{sandbox.pk}/resize", payload, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "details"}
    if payload == {"size": "huge"}:
        assert response.json()["code"] == "invalid_size"


def test_resize_of_a_deleting_sandbox_is_409(api, user, kubeconfig):
    sandbox = services.project_create(owner=user, name="Shop", actor=SYSTEM).sandboxes.get()
    Sandbox.objects.filter(pk=sandbox.pk).update(status=ResourceStatus.TERMINATING)
    assert resize(api, sandbox, "medium").status_code == 409


# --- the dashboard -----------------------------------------------------------------------------------


@pytest.fixture
def web(user):
    from django.test import Client

    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_list_shows_usage_and_the_create_form_takes_a_size(web, user, kubeconfig):
    page = web.get(reverse("dashboard:list")).content.decode()
    assert "0 of 20 projects" in page and "0 of 10 running" in page and "0 of 32 CPU" in page
    response = web.post(reverse("dashboard:create"), {"name": "Shop", "size": "large"})
    assert response.status_code == 302
    assert Sandbox.objects.get(project__owner=user).size == "large"
    page = web.get(reverse("dashboard:list")).content.decode()
    assert "1 of 20 projects" in page and "1 of 10 running" in page and "2 of 32 CPU" in page


def test_dashboard_create_shows_quota_refusal(web, user, kubeconfig, settings):
    settings.QUOTA_MAX_PROJECTS = 0
    response = web.post(reverse("dashboard:create"), {"name": "Shop"})
    assert response.status_code == 400
    assert "Quota exceeded" in response.content.decode()


def test_dashboard_resize(web, user, kubeconfig):
    project = services.project_create(owner=user, name="Shop", actor=SYSTEM)
    page = web.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert 'id="resize-form"' in page
    response = web.post(reverse("dashboard:resize", args=[project.pk]), {"size": "medium"})
    assert response.status_code == 302
    assert project.sandboxes.get().size == "medium"
    response = web.post(reverse("dashboard:resize", args=[project.pk]), {"size": "nope"}, follow=True)
    assert "Choose one of the sizes" in response.content.decode()
