"""Nothing is done twice or lost when workers race or crash, or when the cluster misbehaves."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from kubernetes import client

from core.audit import Actor
from projects.models import Project, Quota
from projects.services import project_create
from reconcile import engine, runner
from reconcile.engine import Outcome
from sandboxes.models import ResourceEvent, Sandbox
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def create(api, name="Shop"):
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def status_of(project_id):
    project = Project.objects.filter(pk=project_id).first()
    return project.status if project else None


def test_it_converges_through_30_percent_server_errors_without_error(cluster_api, beat, kubesim, settings):
    settings.RECONCILE_BACKOFF_BASE_SECONDS = 0.2
    settings.RECONCILE_BACKOFF_MAX_SECONDS = 2
    kubesim.faults(rate=0.3, status=500)
    try:
        ids = [create(cluster_api, f"Flaky {i}") for i in range(3)]
        for project_id in ids:
            wait_for(
                lambda pid=project_id: status_of(pid) == "RUNNING", timeout=60, what="RUNNING despite 500s"
            )
    finally:
        kubesim.clear_faults()
    assert not ResourceEvent.objects.filter(to_status="ERROR").exists()


def test_a_forbidden_create_moves_to_error_with_the_reason(transactional_db, kubesim, kube_namespace, beat):
    from tests.factories import KubeconfigFactory

    kubesim.add_token("no-sts-create", deny=[{"verb": "create", "resource": "statefulsets"}])
    config = KubeconfigFactory(
        value=kubesim.kubeconfig(kube_namespace, token="no-sts-create"),
        namespace=kube_namespace,
        check_status="OK",
    )
    project = project_create(owner=config.user, name="Denied", actor=Actor(user=config.user))
    wait_for(lambda: status_of(project.pk) == "ERROR", what="ERROR")
    sandbox = Sandbox.objects.get(project=project)
    assert sandbox.status_reason == f"forbidden: cannot create statefulsets in namespace {kube_namespace}"
    assert sandbox.failed_status == "CREATING"


def test_a_pod_that_never_becomes_ready_errors_at_the_deadline_with_its_reason(cluster_api, beat, settings):
    settings.RUNTIME_IMAGE = "registry.example.test/kubesim-fail-imagepull:1"
    settings.STATUS_DEADLINES = {**settings.STATUS_DEADLINES, "STARTING": timedelta(seconds=3)}
    project_id = create(cluster_api, "Broken Image")
    wait_for(lambda: status_of(project_id) == "ERROR", timeout=30, what="ERROR at the deadline")
    sandbox = Sandbox.objects.get(project_id=project_id)
    assert sandbox.status_reason.startswith("not ready after")
    assert "ImagePullBackOff" in sandbox.status_reason
    assert sandbox.failed_status == "STARTING"


def test_retry_from_error_resumes_the_failed_step(cluster_api, beat, settings):
    settings.RUNTIME_IMAGE = "registry.example.test/kubesim-fail-crashloop:1"
    settings.STATUS_DEADLINES = {**settings.STATUS_DEADLINES, "STARTING": timedelta(seconds=2)}
    project_id = create(cluster_api, "Crashing")
    wait_for(lambda: status_of(project_id) == "ERROR", timeout=30, what="ERROR")
    assert "CrashLoopBackOff" in Sandbox.objects.get(project_id=project_id).status_reason
    settings.STATUS_DEADLINES = {**settings.STATUS_DEADLINES, "STARTING": timedelta(minutes=10)}
    response = cluster_api.post(f"/api/v1/projects/{project_id}/retry")
    assert response.status_code == 202
    assert response.json()["sandboxes"][0]["status"] == "STARTING"


def test_a_worker_that_dies_mid_step_is_replaced_after_its_lease(cluster_user, settings, beat):
    settings.RECONCILE_KICK_ON_COMMIT = False
    settings.RECONCILE_LEASE_SECONDS = 1
    project = project_create(owner=cluster_user, name="Orphaned Step", actor=Actor(user=cluster_user))
    [dead] = engine.claim(Sandbox, ids=[Sandbox.objects.get(project=project).pk])  # ...and never records
    assert Sandbox.objects.get(pk=dead.pk).lease_token == dead.lease_token
    wait_for(lambda: status_of(project.pk) == "RUNNING", timeout=30, what="another worker finishes")
    # the dead worker wakes up late: its result is dropped
    assert engine.record(dead, Outcome(status="ERROR", message="late")) is None
    assert Sandbox.objects.get(pk=dead.pk).status == "RUNNING"


def test_two_workers_racing_over_200_sandboxes_create_each_object_once(
    cluster_user, kubesim, kube_namespace, celery_worker, settings
):
    settings.RECONCILE_KICK_ON_COMMIT = False  # only the racing sweeps below do the work
    actor = Actor(user=cluster_user)
    Quota.objects.create(user=cluster_user, max_projects=200, max_running_sandboxes=200)  # past the defaults
    projects = [project_create(owner=cluster_user, name=f"Race {i}", actor=actor) for i in range(200)]
    kubesim.reset_stats()
    stop = threading.Event()
    errors = []

    def worker() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                if not runner.reconcile(Sandbox, limit=10):
                    time.sleep(0.05)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: not Sandbox.objects.exclude(status="RUNNING").exists(),
            timeout=120,
            what="200 sandboxes RUNNING",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    creates = {
        key: count
        for key, count in kubesim.stats()["by_object"].items()
        if key.startswith("create ") and f" {kube_namespace}/" in key
    }
    names = {p.sandboxes.get().k8s_name for p in projects}
    assert len(creates) == 200 * 6  # Secret, Service, StatefulSet, three Ingresses per sandbox
    assert set(creates.values()) == {1}, {k: v for k, v in creates.items() if v > 1}
    assert {key.split("/")[-1] for key in creates if key.startswith("create statefulsets")} == names


def test_drift_recreates_a_missing_statefulset(cluster_api, beat, kubesim, kube_namespace):
    from reconcile import verify

    project_id = create(cluster_api, "Drifty")
    wait_for(lambda: status_of(project_id) == "RUNNING", what="RUNNING")
    sandbox = Sandbox.objects.get(project_id=project_id)
    apps = client.AppsV1Api(kubesim.api_client(kube_namespace))
    apps.delete_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    from userconfig.models import UserConfig

    UserConfig.objects.filter(user_id=sandbox.project.owner_id).update(check_status="OK")
    assert verify.verify_round().drifted == [str(sandbox.pk)]
    wait_for(lambda: status_of(project_id) == "RUNNING", what="RUNNING again")
    apps.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    assert ResourceEvent.objects.filter(resource_id=sandbox.pk, reason="drift").exists()


def test_an_object_we_do_not_manage_is_not_adopted(cluster_user, kubesim, kube_namespace, settings):
    settings.RECONCILE_KICK_ON_COMMIT = False  # this test drives the reconciler itself
    core = client.CoreV1Api(kubesim.api_client(kube_namespace))
    project = project_create(owner=cluster_user, name="Squatted", actor=Actor(user=cluster_user))
    sandbox = Sandbox.objects.get(project=project)
    core.create_namespaced_service(
        kube_namespace,
        {"metadata": {"name": f"{sandbox.k8s_name}-service"}, "spec": {"ports": [{"port": 80}]}},
    )
    assert runner.reconcile(Sandbox, ids=[sandbox.pk]) == 1
    sandbox.refresh_from_db()
    assert sandbox.status == "ERROR"
    assert sandbox.status_reason == (
        f"Service {sandbox.k8s_name}-service: name taken by an object Tenter does not manage"
    )
    # and the foreign object was left as it was
    assert (
        core.read_namespaced_service(f"{sandbox.k8s_name}-service", kube_namespace).spec.ports[0].port == 80
    )


def test_rows_wait_while_the_kubeconfig_check_fails(
    transactional_db, kubesim, kube_namespace, beat, settings
):
    from tests.factories import KubeconfigFactory
    from userconfig.models import UserConfig

    # A waiting row looks again every KUBECONFIG_WAIT_RETRY_SECONDS (10 s): sooner here.
    settings.KUBECONFIG_WAIT_RETRY_SECONDS = 1.0
    config = KubeconfigFactory(value=kubesim.kubeconfig(kube_namespace), namespace=kube_namespace)
    kubesim.reset_stats()
    # Creating is refused while the check fails: the check starts failing after the intent is recorded,
    # before the worker hears of it (the kick is sent when this transaction commits).
    with transaction.atomic():
        project = project_create(owner=config.user, name="Waiting", actor=Actor(user=config.user))
        UserConfig.objects.filter(pk=config.pk).update(
            check_status="UNREACHABLE", check_message="Cannot reach the cluster: no route to host"
        )
    sandbox = wait_for(
        lambda: Sandbox.objects.filter(
            project=project, status_reason__contains="kubeconfig check failed"
        ).first(),
        what="the waiting reason",
    )
    assert sandbox.status == "CREATING"
    assert sandbox.attempts == 0
    assert "no route to host" in sandbox.status_reason
    assert not any(f" {kube_namespace}/" in key for key in kubesim.stats()["by_object"])
    # the check passes again: the row goes on by itself
    UserConfig.objects.filter(pk=config.pk).update(check_status="OK")
    wait_for(lambda: status_of(project.pk) == "RUNNING", timeout=30, what="RUNNING once the check passes")


def test_orphans_are_reported_and_deleted_after_the_grace_period(
    cluster_user, kubesim, kube_namespace, settings
):
    from reconcile import drift
    from userconfig.models import UserConfig

    core = client.CoreV1Api(kubesim.api_client(kube_namespace))
    labels = {
        "app.kubernetes.io/managed-by": "tenter",
        "tenter.dev/resource": "00000000-0000-0000-0000-000000000000",
        "tenter.dev/owner": str(cluster_user.pk),  # the sweep touches only this user's own objects
    }
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "left-behind-env", "labels": labels}})
    core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "not-ours"}})
    config = UserConfig.objects.get(user=cluster_user)
    settings.ORPHAN_DELETE_AFTER_MINUTES = 0
    assert drift.find_orphans(config) == [("Secret", "left-behind-env", False)]
    core.read_namespaced_secret("left-behind-env", kube_namespace)  # reported only
    settings.ORPHAN_DELETE_AFTER_MINUTES = 1
    later = timezone.now() + timedelta(minutes=5)
    assert drift.find_orphans(config, now=later) == [("Secret", "left-behind-env", True)]
    with pytest.raises(client.ApiException):
        core.read_namespaced_secret("left-behind-env", kube_namespace)
    core.read_namespaced_secret("not-ours", kube_namespace)
