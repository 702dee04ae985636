"""Forgetting a project whose cluster access is gone: its rows go, its timeline keeps what may be left
behind on the cluster, and nothing on the cluster is touched."""

import pytest
from kubernetes import client

from core.audit import SYSTEM, ActorKind
from projects.models import Project
from sandboxes.models import ResourceEvent, Sandbox
from tests.factories import ProjectFactory, SandboxFactory
from tests.reconcile.conftest import wait_for
from userconfig import services as userconfig_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _running(api) -> Project:
    response = api.post("/api/v1/projects", {"name": "Left Behind"}, format="json")
    assert response.status_code == 202
    project_id = response.json()["id"]
    wait_for(lambda: Project.objects.get(pk=project_id).status == "RUNNING", timeout=30, what="RUNNING")
    return Project.objects.get(pk=project_id)


def test_a_project_whose_kubeconfig_was_removed_is_forgotten_and_nothing_on_the_cluster_is_touched(
    cluster_api, cluster_user, beat, kubesim, kube_namespace
):
    project = _running(cluster_api)
    sandbox = Sandbox.objects.get(project=project)
    # while the kubeconfig works, forgetting is refused: delete removes the objects instead
    refused = cluster_api.post(f"/api/v1/projects/{project.pk}/forget")
    assert refused.status_code == 409
    assert refused.json()["code"] == "cluster_reachable"
    assert Sandbox.objects.filter(pk=sandbox.pk).exists()

    userconfig_services.kubeconfig_remove(user=cluster_user, actor=SYSTEM)
    kubesim.reset_stats()
    assert cluster_api.post(f"/api/v1/projects/{project.pk}/forget").status_code == 204

    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Sandbox.objects.filter(pk=sandbox.pk).exists()
    event = ResourceEvent.objects.get(resource_id=sandbox.pk, reason="forgotten")
    assert event.project_id is None and event.project_name == "Left Behind"
    assert f"StatefulSet {sandbox.k8s_name}" in event.message
    assert f"namespace {kube_namespace}" in event.message
    assert "no kubeconfig is stored" in event.message
    # the cluster was not asked anything, and everything is still there
    by = kubesim.stats()["by_verb"]
    assert not by.get("delete") and not by.get("patch") and not by.get("update")
    apps = client.AppsV1Api(kubesim.api_client(kube_namespace))
    apps.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    assert cluster_api.get(f"/api/v1/projects/{project.pk}").status_code == 404


def test_a_failing_kubeconfig_allows_forgetting_and_another_users_project_is_a_404(
    cluster_api, cluster_user, other_user, celery_worker
):
    from userconfig.models import CheckStatus, UserConfig

    # the check of the saved kubeconfig runs in the worker: let it finish before marking the cluster down
    wait_for(
        lambda: (
            UserConfig.objects.exclude(check_status=CheckStatus.PENDING).filter(user=cluster_user).first()
        ),
        what="the kubeconfig check",
    )
    UserConfig.objects.filter(user=cluster_user).update(check_status="UNREACHABLE", check_message="down.")
    mine = ProjectFactory(owner=cluster_user)
    SandboxFactory(project=mine, status="RUNNING")
    theirs = ProjectFactory(owner=other_user)
    assert cluster_api.post(f"/api/v1/projects/{theirs.pk}/forget").status_code == 404
    assert Project.objects.filter(pk=theirs.pk).exists()
    assert cluster_api.post(f"/api/v1/projects/{mine.pk}/forget").status_code == 204
    assert not Project.objects.filter(pk=mine.pk).exists()


def test_operators_forget_from_the_admin(cluster_user, admin_client):
    from userconfig.models import UserConfig

    UserConfig.objects.filter(user=cluster_user).delete()
    gone = ProjectFactory(owner=cluster_user)
    SandboxFactory(project=gone, status="ERROR")
    response = admin_client.post(
        "/admin/projects/project/", {"action": "forget", "_selected_action": [str(gone.pk)]}, follow=True
    )
    assert response.status_code == 200
    assert not Project.objects.filter(pk=gone.pk).exists()
    event = ResourceEvent.objects.get(reason="forgotten")
    assert event.actor == ActorKind.ADMIN
