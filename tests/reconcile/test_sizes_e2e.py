"""End to end: a sandbox's size reaches its StatefulSet on kubesim, at creation and after a resize."""

import pytest
from django.conf import settings

from projects.models import Project
from sandboxes.models import Sandbox
from tests.reconcile.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def main_container_resources(apps_api, namespace, name):
    sts = apps_api.read_namespaced_stateful_set(name, namespace)
    [main] = [c for c in sts.spec.template.spec.containers if c.name == name]
    return main.resources.requests, main.resources.limits


def settled(project_id) -> bool:
    project = Project.objects.filter(pk=project_id).first()
    sandbox = Sandbox.objects.filter(project_id=project_id).first()
    return bool(
        project
        and sandbox
        and project.status == "RUNNING"
        and sandbox.observed_generation == sandbox.generation
    )


def expected(size):
    values = settings.SANDBOX_SIZES[size]
    return (
        {"cpu": values["cpu_request"], "memory": values["memory_request"]},
        {"cpu": values["cpu_limit"], "memory": values["memory_limit"]},
    )


def test_size_at_creation_and_resize_reach_the_statefulset(cluster_api, beat, kube_namespace, apps_api):
    response = cluster_api.post("/api/v1/projects", {"name": "Sized", "size": "medium"}, format="json")
    assert response.status_code == 202, response.json()
    project_id = response.json()["id"]
    wait_for(lambda: settled(project_id), what="RUNNING")
    sandbox = Sandbox.objects.get(project_id=project_id)
    assert main_container_resources(apps_api, kube_namespace, sandbox.k8s_name) == expected("medium")

    response = cluster_api.post(f"/api/v1/sandboxes/{sandbox.pk}/resize", {"size": "large"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "UPDATING"
    wait_for(lambda: settled(project_id), what="RUNNING at the new size")
    assert main_container_resources(apps_api, kube_namespace, sandbox.k8s_name) == expected("large")


def test_a_resize_that_grows_storage_grows_the_claim(
    cluster_api, beat, kube_namespace, apps_api, core, settings
):
    """The StatefulSet's claim template cannot change (the API server refuses it), so the claim itself
    is patched to the new request; the template keeps the size the sandbox was created with."""
    settings.SANDBOX_SIZES = {
        **settings.SANDBOX_SIZES,
        "roomy": {**settings.SANDBOX_SIZES["small"], "storage_size": "25Gi"},
        "tight": {**settings.SANDBOX_SIZES["small"], "storage_size": "5Gi"},
    }
    response = cluster_api.post("/api/v1/projects", {"name": "Grows", "size": "small"}, format="json")
    assert response.status_code == 202, response.json()
    project_id = response.json()["id"]
    wait_for(lambda: settled(project_id), what="RUNNING")
    sandbox = Sandbox.objects.get(project_id=project_id)
    claim = f"vn-homevn-fulling-{sandbox.k8s_name}-0"
    assert core.read_namespaced_persistent_volume_claim(claim, kube_namespace).spec.resources.requests == {
        "storage": "10Gi"
    }

    response = cluster_api.post(f"/api/v1/sandboxes/{sandbox.pk}/resize", {"size": "roomy"}, format="json")
    assert response.status_code == 202, response.json()
    wait_for(lambda: settled(project_id), what="RUNNING with more storage")
    pvc = core.read_namespaced_persistent_volume_claim(claim, kube_namespace)
    assert pvc.spec.resources.requests == {"storage": "25Gi"}
    wait_for(
        lambda: (
            core.read_namespaced_persistent_volume_claim(claim, kube_namespace).status.capacity
            == {"storage": "25Gi"}
        ),
        what="the volume expanded",
    )
    sts = apps_api.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    assert sts.spec.volume_claim_templates[0].spec.resources.requests == {"storage": "10Gi"}  # immutable
    assert sts.metadata.annotations["deploy.cloud.sealos.io/resize"] == "25Gi"
    assert Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING"

    # A later change (a stop and a start) keeps the claim as it is and costs no error.
    assert cluster_api.post(f"/api/v1/projects/{project_id}/stop").status_code == 202
    wait_for(lambda: Project.objects.get(pk=project_id).status == "STOPPED", what="STOPPED")
    assert cluster_api.post(f"/api/v1/projects/{project_id}/start").status_code == 202
    wait_for(lambda: settled(project_id), what="RUNNING again")
    assert core.read_namespaced_persistent_volume_claim(claim, kube_namespace).spec.resources.requests == {
        "storage": "25Gi"
    }
    # Shrinking is refused before anything is recorded.
    response = cluster_api.post(f"/api/v1/sandboxes/{sandbox.pk}/resize", {"size": "tight"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "storage_cannot_shrink"
