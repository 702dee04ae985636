"""Continuous verification: a sandbox or database that breaks after it started is noticed, explained
and repaired (kubesim --simulate, the official client, a real worker where the reconciler acts)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from kubernetes import client

from projects.models import Project
from reconcile import verify
from sandboxes.models import Database, ResourceEvent, Sandbox
from tests.reconcile.conftest import wait_for
from userconfig.models import UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAIL = "kubesim.dev/fail"


def _running_project(api, name="Watched") -> str:
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    assert response.status_code == 202, response.json()
    project_id = response.json()["id"]
    wait_for(lambda: Project.objects.get(pk=project_id).status == "RUNNING", timeout=30, what="RUNNING")
    return project_id


def _checked_ok(user) -> None:
    """The background kubeconfig check, done (the sweep only works with kubeconfigs that passed it)."""
    UserConfig.objects.filter(user=user).update(check_status="OK")


def _reasons(sandbox) -> list[str]:
    return list(
        ResourceEvent.objects.filter(resource_id=sandbox.pk)
        .order_by("created_at")
        .values_list("reason", flat=True)
    )


def _pod(core, namespace, sandbox):
    return core.read_namespaced_pod(f"{sandbox.k8s_name}-0", namespace)


def test_a_crash_looping_pod_is_degraded_with_its_reason_and_running_again_after_recovery(
    cluster_api, cluster_user, beat, kube_namespace, core
):
    project_id = _running_project(cluster_api)
    _checked_ok(cluster_user)
    sandbox = Sandbox.objects.get(project_id=project_id)
    verify.verify_round()  # healthy: nothing to say
    assert Sandbox.objects.get(pk=sandbox.pk).degraded_reason == ""
    pod = f"{sandbox.k8s_name}-0"
    core.patch_namespaced_pod(pod, kube_namespace, {"metadata": {"annotations": {FAIL: "OOMKilled"}}})
    wait_for(lambda: not _pod(core, kube_namespace, sandbox).status.container_statuses[0].ready, what="crash")

    result = verify.verify_round()  # one sweep period
    sandbox.refresh_from_db()
    assert result.degraded == 1
    assert sandbox.status == "RUNNING" and sandbox.is_degraded
    assert sandbox.degraded_reason.startswith(f"OOMKilled: container {sandbox.k8s_name} restarted ")
    assert "last exit OOMKilled (code 137)" in sandbox.degraded_reason
    # the project page and the API say so plainly
    body = cluster_api.get(f"/api/v1/projects/{project_id}").json()
    health = body["sandboxes"][0]["health"]
    assert health["degraded"] is True and health["reason"] == sandbox.degraded_reason and health["since"]
    assert body["status"] == "RUNNING"

    core.patch_namespaced_pod(
        pod, kube_namespace, [{"op": "remove", "path": "/metadata/annotations/kubesim.dev~1fail"}]
    )
    wait_for(lambda: _pod(core, kube_namespace, sandbox).status.container_statuses[0].ready, what="recovered")
    assert verify.verify_round().recovered == 1
    sandbox.refresh_from_db()
    assert sandbox.status == "RUNNING" and not sandbox.is_degraded and sandbox.degraded_since is None
    assert _reasons(sandbox)[-2:] == ["degraded", "recovered"]


def test_a_deleted_ingress_and_env_secret_are_recreated_and_recorded_as_drift(
    cluster_api, cluster_user, beat, kubesim, kube_namespace, core
):
    project_id = _running_project(cluster_api)
    _checked_ok(cluster_user)
    sandbox = Sandbox.objects.get(project_id=project_id)
    net = client.NetworkingV1Api(kubesim.api_client(kube_namespace))
    net.delete_namespaced_ingress(f"{sandbox.k8s_name}-ttyd-ingress", kube_namespace)
    core.delete_namespaced_secret(f"{sandbox.k8s_name}-env", kube_namespace)

    result = verify.verify_round()
    assert result.drifted == [str(sandbox.pk)]
    net.read_namespaced_ingress(f"{sandbox.k8s_name}-ttyd-ingress", kube_namespace)
    secret = core.read_namespaced_secret(f"{sandbox.k8s_name}-env", kube_namespace)
    assert "TTYD_ACCESS_TOKEN" in secret.data
    event = ResourceEvent.objects.filter(resource_id=sandbox.pk, reason="drift").get()
    assert f"Ingress {sandbox.k8s_name}-ttyd-ingress was deleted; re-created" in event.message
    assert f"Secret {sandbox.k8s_name}-env was deleted; re-created" in event.message
    sandbox.refresh_from_db()
    assert sandbox.status == "RUNNING" and sandbox.lease_token is None
    # repaired: the next round finds nothing to do
    assert verify.verify_round().drifted == []


def test_a_changed_statefulset_spec_is_restored(cluster_api, cluster_user, beat, kube_namespace, apps_api):
    project_id = _running_project(cluster_api)
    _checked_ok(cluster_user)
    sandbox = Sandbox.objects.get(project_id=project_id)
    verify.verify_round()  # the baseline
    sts = apps_api.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    image = sts.spec.template.spec.containers[0].image
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": sts.spec.template.spec.containers[0].name, "image": "evil:latest"}
                    ]
                }
            }
        }
    }
    apps_api.patch_namespaced_stateful_set(sandbox.k8s_name, kube_namespace, patch)
    assert (
        apps_api.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
        .spec.template.spec.containers[0]
        .image
        == "evil:latest"
    )

    assert verify.verify_round().drifted == [str(sandbox.pk)]
    restored = apps_api.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    assert restored.spec.template.spec.containers[0].image == image
    event = ResourceEvent.objects.filter(resource_id=sandbox.pk, reason="drift").get()
    assert f"StatefulSet {sandbox.k8s_name} was changed; restored" in event.message


def test_a_stopped_sandbox_scaled_up_by_hand_is_scaled_back(
    cluster_api, cluster_user, beat, kube_namespace, apps_api
):
    project_id = _running_project(cluster_api)
    assert cluster_api.post(f"/api/v1/projects/{project_id}/stop").status_code == 202
    wait_for(lambda: Project.objects.get(pk=project_id).status == "STOPPED", what="STOPPED")
    _checked_ok(cluster_user)
    sandbox = Sandbox.objects.get(project_id=project_id)
    verify.verify_round()
    apps_api.patch_namespaced_stateful_set(sandbox.k8s_name, kube_namespace, {"spec": {"replicas": 1}})
    assert verify.verify_round().drifted == [str(sandbox.pk)]
    assert apps_api.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace).spec.replicas == 0
    assert Sandbox.objects.get(pk=sandbox.pk).status == "STOPPED"


def test_an_object_of_another_owner_is_never_read_as_ours(
    cluster_api, cluster_user, beat, kubesim, kube_namespace, core
):
    """Lists are by the owner's label: a neighbour's objects in the same namespace are not seen."""
    project_id = _running_project(cluster_api)
    _checked_ok(cluster_user)
    core.create_namespaced_secret(
        kube_namespace,
        {
            "metadata": {
                "name": "neighbour-env",
                "labels": {"app.kubernetes.io/managed-by": "tenter", "tenter.dev/owner": "999999"},
            }
        },
    )
    result = verify.verify_round()
    assert result.drifted == [] and result.failed == 0
    assert core.read_namespaced_secret("neighbour-env", kube_namespace).metadata.name == "neighbour-env"
    assert Project.objects.get(pk=project_id).status == "RUNNING"


# -- databases ---------------------------------------------------------------------------------------


def _cluster_api(kubesim, namespace):
    return client.CustomObjectsApi(kubesim.api_client(namespace))


def _annotate_cluster(kubesim, namespace, database, value):
    group, version = database.api_version.split("/")
    body = {"metadata": {"annotations": {FAIL: value}}}
    _cluster_api(kubesim, namespace).patch_namespaced_custom_object(
        group, version, namespace, "clusters", database.k8s_name, body
    )


def _cluster_phase(kubesim, namespace, database):
    group, version = database.api_version.split("/")
    obj = _cluster_api(kubesim, namespace).get_namespaced_custom_object(
        group, version, namespace, "clusters", database.k8s_name
    )
    return (obj.get("status") or {}).get("phase"), obj


@pytest.mark.parametrize("api_version", ["apps.kubeblocks.io/v1", "apps.kubeblocks.io/v1alpha1"])
def test_database_stop_and_start_end_to_end(
    cluster_api, beat, kubesim, kube_namespace, settings, api_version
):
    settings.KUBEBLOCKS_API_VERSION = api_version
    project_id = _running_project(cluster_api)
    response = cluster_api.post(f"/api/v1/projects/{project_id}/databases", format="json")
    assert response.status_code == 202
    database = Database.objects.get(pk=response.json()["id"])
    assert database.api_version == api_version
    wait_for(lambda: Project.objects.get(pk=project_id).status == "RUNNING", timeout=30, what="RUNNING")
    assert cluster_api.post(f"/api/v1/projects/{project_id}/stop").status_code == 202
    wait_for(lambda: Database.objects.get(pk=database.pk).status == "STOPPED", timeout=30, what="db STOPPED")
    phase, obj = _cluster_phase(kubesim, kube_namespace, database)
    assert phase == "Stopped" and all(c.get("stop") for c in obj["spec"]["componentSpecs"])
    assert cluster_api.post(f"/api/v1/projects/{project_id}/start").status_code == 202
    wait_for(lambda: Database.objects.get(pk=database.pk).status == "RUNNING", timeout=30, what="db RUNNING")
    phase, obj = _cluster_phase(kubesim, kube_namespace, database)
    assert phase == "Running" and not any(c.get("stop") for c in obj["spec"]["componentSpecs"])


def test_a_running_database_whose_cluster_fails_goes_to_error_with_the_clusters_reason(
    cluster_api, cluster_user, beat, kubesim, kube_namespace
):
    project_id = _running_project(cluster_api)
    response = cluster_api.post(f"/api/v1/projects/{project_id}/databases", format="json")
    database = Database.objects.get(pk=response.json()["id"])
    wait_for(lambda: Database.objects.get(pk=database.pk).status == "RUNNING", timeout=30, what="db RUNNING")
    _checked_ok(cluster_user)
    _annotate_cluster(kubesim, kube_namespace, database, "Failed")
    wait_for(lambda: _cluster_phase(kubesim, kube_namespace, database)[0] == "Failed", what="cluster Failed")
    assert verify.verify_round().failed == 1
    database.refresh_from_db()
    assert database.status == "ERROR"
    assert database.status_reason == "Cluster Failed: ComponentsNotReady, component postgresql Failed"


def test_a_starting_database_whose_cluster_fails_goes_to_error_before_any_deadline(
    cluster_user, kubesim, kube_namespace, settings
):
    from core.audit import Actor
    from projects.services import database_add, project_create
    from reconcile import runner

    settings.RECONCILE_KICK_ON_COMMIT = False  # this test drives the reconciler itself
    _checked_ok(cluster_user)
    actor = Actor(user=cluster_user)
    project = project_create(owner=cluster_user, name="Failing db", actor=actor)
    database = database_add(project=project, actor=actor)
    assert runner.reconcile(Database, ids=[database.pk]) == 1
    assert Database.objects.get(pk=database.pk).status == "STARTING"
    _annotate_cluster(kubesim, kube_namespace, database, "Abnormal")
    wait_for(lambda: _cluster_phase(kubesim, kube_namespace, database)[0] == "Abnormal", what="Abnormal")
    Database.objects.filter(pk=database.pk).update(next_attempt_at=None)
    assert runner.reconcile(Database, ids=[database.pk]) == 1
    database.refresh_from_db()
    assert database.status == "ERROR"
    assert database.status_reason.startswith("Cluster Abnormal: ComponentsNotReady")
    assert ResourceEvent.objects.filter(resource_id=database.pk, reason="cluster_failed").exists()


# -- cost ----------------------------------------------------------------------------------------------


def _healthy_sandboxes(user, kubesim, namespace, n):
    from reconcile import sandbox as sandbox_steps
    from reconcile.runner import client_for
    from tests.factories import ProjectFactory, SandboxFactory

    config = UserConfig.objects.get(user=user)
    k = client_for(config).for_step(namespace)
    rows = []
    for _ in range(n):
        row = SandboxFactory(
            project=ProjectFactory(owner=user, status="RUNNING"),
            k8s_namespace=namespace,
            status="RUNNING",
            k8s_server=config.server_host,
        )
        sandbox_steps.apply_all(k, row, replicas=1, converge=True)
        rows.append(row)
    apps = client.AppsV1Api(kubesim.api_client(namespace))
    wait_for(
        lambda: all(
            (apps.read_namespaced_stateful_set(r.k8s_name, namespace).status.ready_replicas or 0) == 1
            for r in rows
        ),
        what="pods ready",
    )
    return rows


def _round_cost(kubesim) -> tuple[int, int]:
    kubesim.reset_stats()
    with CaptureQueriesContext(connection) as queries:
        result = verify.verify_round()
    assert result.drifted == [] and result.degraded == 0
    ours = ("statefulsets", "services", "ingresses", "secrets", "pods", "clusters", "events")
    by = kubesim.stats()["by_verb_resource"]
    return len(queries), sum(n for key, n in by.items() if key.split(" ")[-1] in ours)


def test_a_rounds_sql_and_kubernetes_requests_are_constant_in_the_number_of_healthy_resources(
    cluster_user, kubesim, kube_namespace, settings
):
    settings.RECONCILE_KICK_ON_COMMIT = False
    _checked_ok(cluster_user)
    _healthy_sandboxes(cluster_user, kubesim, kube_namespace, 2)
    verify.verify_round()  # the first round takes the baselines
    small = _round_cost(kubesim)
    _healthy_sandboxes(cluster_user, kubesim, kube_namespace, 6)
    verify.verify_round()
    large = _round_cost(kubesim)
    assert Sandbox.objects.filter(last_observed_at__isnull=False).count() == 8
    assert small == large
    assert large[1] == len(verify.SANDBOX_KINDS)  # one LIST per kind for the owner's namespace
