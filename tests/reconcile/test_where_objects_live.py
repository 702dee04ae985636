"""Objects are operated where they live (the namespace and cluster recorded on the row), and waiting for
a usable kubeconfig is a state with its own deadline that stops the status's clock: a short blip of the
kubeconfig check resumes work instead of failing it. Real kubesim, real PostgreSQL, in-process steps
(`runner.reconcile`) or a real Celery worker."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from kubernetes import client

from core.audit import SYSTEM
from projects.models import Project
from reconcile import runner
from sandboxes.models import ResourceStatus, Sandbox, past_deadline_q
from tests.reconcile.conftest import wait_for
from userconfig import services as userconfig_services
from userconfig.models import CheckStatus, ConfigKey, UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _objects(kubesim, namespace):
    core = client.CoreV1Api(kubesim.api_client(namespace))
    apps = client.AppsV1Api(kubesim.api_client(namespace))
    net = client.NetworkingV1Api(kubesim.api_client(namespace))
    return sorted(
        [f"sts/{o.metadata.name}" for o in apps.list_namespaced_stateful_set(namespace).items]
        + [f"svc/{o.metadata.name}" for o in core.list_namespaced_service(namespace).items]
        + [f"secret/{o.metadata.name}" for o in core.list_namespaced_secret(namespace).items]
        + [f"ing/{o.metadata.name}" for o in net.list_namespaced_ingress(namespace).items]
        + [f"pvc/{o.metadata.name}" for o in core.list_namespaced_persistent_volume_claim(namespace).items]
    )


def _running_project(api, name="Where"):
    body = api.post("/api/v1/projects", {"name": name}, format="json").json()
    wait_for(lambda: Project.objects.filter(pk=body["id"], status="RUNNING").exists(), what="RUNNING")
    return body["id"]


def test_a_kubeconfig_for_another_namespace_is_refused_while_resources_live_there(
    cluster_api, cluster_user, beat, kubesim, kube_namespace
):
    project_id = _running_project(cluster_api)
    sandbox = Sandbox.objects.get(project_id=project_id)
    assert (sandbox.k8s_namespace, sandbox.k8s_server) == (kube_namespace, "127.0.0.1")
    other = kubesim.create_namespace(f"{kube_namespace}-b")
    try:
        response = cluster_api.put(
            "/api/v1/me/kubeconfig", {"kubeconfig": kubesim.kubeconfig(other)}, format="json"
        )
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "kubeconfig_would_strand"
        assert (
            f"1 resource still lives where the current one points (sandbox {kube_namespace}/"
            in body["message"]
        )
        assert body["details"]["resources"] == [f"sandbox {kube_namespace}/{sandbox.k8s_name} on 127.0.0.1"]
        stored = UserConfig.objects.get(user=cluster_user, key=ConfigKey.KUBECONFIG)
        assert stored.namespace == kube_namespace  # nothing already stored is lost

        assert cluster_api.delete(f"/api/v1/projects/{project_id}").status_code == 202
        wait_for(lambda: not Project.objects.filter(pk=project_id).exists(), what="project gone")
        response = cluster_api.put(
            "/api/v1/me/kubeconfig", {"kubeconfig": kubesim.kubeconfig(other)}, format="json"
        )
        assert response.status_code == 200, response.json()
    finally:
        kubesim.delete_namespace(other)


def test_delete_removes_the_objects_where_they_live_after_the_kubeconfig_moved(
    cluster_api, cluster_user, beat, kubesim, kube_namespace
):
    project_id = _running_project(cluster_api)
    assert _objects(kubesim, kube_namespace)
    other = kubesim.create_namespace(f"{kube_namespace}-b")
    try:
        # An operator (or an older Tenter) points the kubeconfig at another namespace of the same cluster.
        userconfig_services.kubeconfig_save(user=cluster_user, text=kubesim.kubeconfig(other), actor=SYSTEM)
        assert cluster_api.delete(f"/api/v1/projects/{project_id}").status_code == 202
        wait_for(lambda: not Project.objects.filter(pk=project_id).exists(), what="project gone")
        assert _objects(kubesim, kube_namespace) == []  # nothing left behind in the old namespace
    finally:
        kubesim.delete_namespace(other)


def _sandbox_in(status, user, namespace, *, age):
    from tests.factories import SandboxFactory

    sandbox = SandboxFactory(project__owner=user, k8s_namespace=namespace, k8s_server="127.0.0.1")
    Sandbox.objects.filter(pk=sandbox.pk).update(
        status=status, status_changed_at=timezone.now() - age, next_attempt_at=None
    )
    return Sandbox.objects.get(pk=sandbox.pk)


def _check(user, status):
    UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG).update(
        check_status=status, check_message="cluster unreachable" if status != CheckStatus.OK else "ok"
    )


def _step(sandbox):
    Sandbox.objects.filter(pk=sandbox.pk).update(next_attempt_at=None, locked_until=None)
    runner.reconcile(Sandbox, ids=[sandbox.pk])
    return Sandbox.objects.get(pk=sandbox.pk)


@pytest.fixture
def quiet_user(kubesim, kube_namespace):
    """A user whose kubesim kubeconfig is stored as checked OK without queueing a background check, so
    that only the test sets the check's result."""
    from tests.factories import KubeconfigFactory

    config = KubeconfigFactory(
        value=kubesim.kubeconfig(kube_namespace),
        namespace=kube_namespace,
        server=kubesim.url,
        server_host="127.0.0.1",
    )
    return config.user


def test_a_blip_of_the_kubeconfig_check_resumes_work_instead_of_failing_it(quiet_user, kube_namespace):
    cluster_user = quiet_user
    # CREATING for 5 minutes (its deadline is 2), 4 of them waiting for the check to recover.
    sandbox = _sandbox_in(ResourceStatus.CREATING, cluster_user, kube_namespace, age=timedelta(minutes=5))
    _check(cluster_user, CheckStatus.UNREACHABLE)
    sandbox = _step(sandbox)
    assert sandbox.status == ResourceStatus.CREATING
    assert sandbox.status_reason == "Waiting: the kubeconfig check failed: cluster unreachable."
    assert sandbox.waiting_since is not None
    assert not Sandbox.objects.filter(past_deadline_q(), pk=sandbox.pk).exists()  # the clock is stopped
    Sandbox.objects.filter(pk=sandbox.pk).update(waiting_since=timezone.now() - timedelta(minutes=4))

    _check(cluster_user, CheckStatus.OK)
    sandbox = _step(sandbox)
    assert sandbox.status == ResourceStatus.STARTING, sandbox.status_reason  # created, not ERROR
    assert sandbox.waiting_since is None


@override_settings(KUBECONFIG_WAIT_DEADLINE=timedelta(minutes=30))
def test_terminating_without_a_kubeconfig_gives_up_after_the_wait_deadline(quiet_user, kube_namespace):
    cluster_user = quiet_user
    sandbox = _sandbox_in(ResourceStatus.TERMINATING, cluster_user, kube_namespace, age=timedelta(minutes=1))
    userconfig_services.kubeconfig_remove(user=cluster_user, actor=SYSTEM)
    sandbox = _step(sandbox)
    assert sandbox.status == ResourceStatus.TERMINATING
    assert sandbox.status_reason == "Waiting: no kubeconfig is stored for the owner."
    Sandbox.objects.filter(pk=sandbox.pk).update(waiting_since=timezone.now() - timedelta(minutes=31))
    assert Sandbox.objects.filter(past_deadline_q(), pk=sandbox.pk).exists()  # the admin and metrics see it

    sandbox = _step(sandbox)
    assert sandbox.status == ResourceStatus.ERROR
    assert sandbox.status_reason == "gave up after waiting 31 min: no kubeconfig is stored for the owner"
