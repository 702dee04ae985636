"""The periodic sweeps: celery beat runs every one of them, and the orphan sweep, run as beat runs it,
reports and then deletes only what no row of any user claims."""

import logging
import secrets
import time
import uuid

import yaml
from django.conf import settings as django_settings
from kubernetes import client

from tests.factories import KubeconfigFactory, ProjectFactory, SandboxFactory, UserFactory
from tests.kubesim.helpers import cluster_v1

MANAGED = "app.kubernetes.io/managed-by"
RESOURCE = "tenter.dev/resource"


def _registered_tasks() -> set[str]:
    import reconcile.tasks  # noqa: F401  (registers the shared tasks)
    from config.celery import app

    return set(app.tasks)


def test_beat_runs_the_orphan_sweep_every_five_minutes():
    entry = django_settings.CELERY_BEAT_SCHEDULE["sweep-orphans"]
    assert entry["task"] == "reconcile.sweep_orphans"
    assert entry["schedule"] == 300.0
    assert entry["options"]["expires"] >= entry["schedule"]


def test_every_sweep_is_scheduled_and_every_scheduled_task_exists():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    tasks = _registered_tasks()
    scheduled = {entry["task"] for entry in schedule.values()}
    assert scheduled <= tasks
    assert {name for name in tasks if name.startswith("reconcile.sweep_")} <= scheduled
    assert all(entry["options"]["expires"] > 0 for entry in schedule.values())


OWNER = "tenter.dev/owner"


def _labels(resource_id: str | None, owner) -> dict[str, str]:
    return {MANAGED: "tenter", RESOURCE: resource_id, OWNER: str(owner.pk)} if resource_id else {}


def _secret(core, namespace: str, name: str, resource_id: str | None, owner) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": name, "labels": _labels(resource_id, owner)}}
    )


def _exists(core, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        assert exc.status == 404
        return False
    return True


def _orphan_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reconcile.drift"]


def test_the_orphan_sweep_task(cluster_user, kubesim, kube_namespace, settings, caplog):
    from reconcile.tasks import sweep_orphans_task
    from userconfig.models import UserConfig

    UserConfig.objects.filter(user=cluster_user).update(check_status="OK")
    ns = kube_namespace
    core = client.CoreV1Api(kubesim.api_client(ns))
    own = SandboxFactory(project=ProjectFactory(owner=cluster_user), k8s_namespace=ns, status="RUNNING")
    # another user works in the same namespace (no kubeconfig of theirs is swept here)
    neighbour = SandboxFactory(
        project=ProjectFactory(owner=UserFactory()), k8s_namespace=ns, status="RUNNING"
    )
    _secret(core, ns, "own-env", str(own.pk), cluster_user)
    _secret(core, ns, "neighbour-env", str(neighbour.pk), neighbour.project.owner)
    _secret(core, ns, "gone-env", str(uuid.uuid4()), cluster_user)  # its row is gone: an orphan
    # the neighbour's orphan: never this user's sweep's to report or delete
    _secret(core, ns, "neighbour-gone-env", str(uuid.uuid4()), neighbour.project.owner)
    _secret(core, ns, "not-ours", None, cluster_user)
    # a PVC and a database cluster whose rows are gone: orphans too
    gone_pvc = f"vn-homevn-fulling-gone-{secrets.token_hex(2)}-0"
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": gone_pvc, "labels": _labels(str(uuid.uuid4()), cluster_user)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    custom = client.CustomObjectsApi(kubesim.api_client(ns))
    cluster = cluster_v1("gone-db")
    cluster["metadata"]["labels"] = _labels(str(uuid.uuid4()), cluster_user)
    custom.create_namespaced_custom_object("apps.kubeblocks.io", "v1", ns, "clusters", cluster)
    # a user whose kubeconfig check failed is not swept...
    failed_ns = kubesim.create_namespace(f"failed-{secrets.token_hex(3)}")
    failed_core = client.CoreV1Api(kubesim.api_client(failed_ns))
    _secret(failed_core, failed_ns, "failed-env", str(uuid.uuid4()), cluster_user)
    KubeconfigFactory(value=kubesim.kubeconfig(failed_ns), namespace=failed_ns, check_status="FAILED")
    # ...and one whose cluster does not answer does not stop the others
    elsewhere = yaml.safe_load(kubesim.kubeconfig("elsewhere"))
    elsewhere["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens there
    unreachable = KubeconfigFactory(value=yaml.safe_dump(elsewhere), namespace="elsewhere")
    try:
        settings.ORPHAN_DELETE_AFTER_MINUTES = 0  # report only
        with caplog.at_level(logging.WARNING, logger="reconcile"):
            sweep_orphans_task()
        assert sorted(_orphan_lines(caplog)) == [
            f"orphan Cluster {ns}/gone-db",
            f"orphan PersistentVolumeClaim {ns}/{gone_pvc}",
            f"orphan Secret {ns}/gone-env",
        ]
        failed = f"orphan sweep failed for user {unreachable.user_id}"
        assert any(r.getMessage().startswith(failed) for r in caplog.records)
        everything = ("own-env", "neighbour-env", "gone-env", "neighbour-gone-env", "not-ours")
        assert all(_exists(core, ns, name) for name in everything)
        # reported: the admin's list and the metric
        from sandboxes.models import OrphanObject

        reported = OrphanObject.objects.filter(deleted_at=None)
        assert sorted(reported.values_list("kind", "name")) == [
            ("Cluster", "gone-db"),
            ("PersistentVolumeClaim", gone_pvc),
            ("Secret", "gone-env"),
        ]
        assert set(reported.values_list("owner_id", flat=True)) == {cluster_user.pk}
        from config.metrics import render

        assert 'tenter_orphan_objects{state="reported"} 3' in render()

        settings.ORPHAN_DELETE_AFTER_MINUTES = 0.001  # 60 ms after it was first reported
        time.sleep(0.2)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="reconcile"):
            sweep_orphans_task()
        assert sorted(_orphan_lines(caplog)) == [
            f"orphan Cluster {ns}/gone-db deleted",
            f"orphan PersistentVolumeClaim {ns}/{gone_pvc} deleted",
            f"orphan Secret {ns}/gone-env deleted",
        ]
        assert not _exists(core, ns, "gone-env")
        assert all(
            _exists(core, ns, name) for name in ("own-env", "neighbour-env", "neighbour-gone-env", "not-ours")
        )
        assert not OrphanObject.objects.filter(deleted_at=None).exists()
        assert 'tenter_orphan_objects{state="reported"} 0' in render()
        assert _exists(failed_core, failed_ns, "failed-env")
    finally:
        kubesim.delete_namespace(failed_ns)
