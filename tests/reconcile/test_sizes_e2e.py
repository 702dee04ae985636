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
