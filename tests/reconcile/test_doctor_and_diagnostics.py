"""`manage.py doctor` (one line per check, non-zero exit when something is wrong) and the diagnostics
panel (fetched by a worker, cached, secrets redacted; the web request never reads the cluster)."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from projects.models import Environment, Project
from reconcile import diagnostics, doctor
from sandboxes.models import Sandbox
from tests.reconcile.conftest import wait_for
from userconfig.models import UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _doctor() -> tuple[str, bool]:
    out = io.StringIO()
    try:
        call_command("doctor", stdout=out)
    except CommandError as exc:
        return out.getvalue() + str(exc), False
    return out.getvalue(), True


def _healthy(cluster_user) -> None:
    UserConfig.objects.filter(user=cluster_user).update(check_status="OK")
    for task in doctor.HEARTBEAT_TASKS:
        doctor.record_heartbeat(task)


def test_doctor_passes_on_a_working_stack(cluster_user, celery_worker, kubesim):
    _healthy(cluster_user)
    text, ok = _doctor()
    assert ok, text
    lines = text.splitlines()
    assert any(line.startswith("OK    database:") for line in lines)
    assert any(line.startswith("OK    workers:") for line in lines)
    assert any("ingress class: IngressClass 'nginx'" in line and line.startswith("OK") for line in lines)
    assert any("storage class: will use the default, standard" in line for line in lines)
    assert any("KubeBlocks: serves Cluster apps.kubeblocks.io/v1" in line for line in lines)


def test_doctor_fails_with_a_readable_line_when_redis_is_down(cluster_user, settings):
    _healthy(cluster_user)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    text, ok = _doctor()
    assert not ok
    assert "FAIL  redis: the broker does not answer (ConnectionError)" in text


def test_doctor_fails_when_the_ingress_class_is_missing(cluster_user, celery_worker, settings):
    _healthy(cluster_user)
    settings.INGRESS_CLASS = "no-such-class"
    text, ok = _doctor()
    assert not ok
    assert "ingress class: IngressClass 'no-such-class' not found" in text
    assert next(line for line in text.splitlines() if "not found" in line).startswith("FAIL")


def test_doctor_fails_when_beat_never_ran(cluster_user, celery_worker):
    from django.core.cache import cache

    UserConfig.objects.filter(user=cluster_user).update(check_status="OK")
    for task in doctor.HEARTBEAT_TASKS:
        cache.delete(doctor.heartbeat_key(task))
    text, ok = _doctor()
    assert not ok
    assert "FAIL  beat: no sweep has ever run: is celery beat running?" in text


def test_diagnostics_are_fetched_by_a_worker_with_secrets_redacted(
    cluster_api, cluster_user, beat, kubesim, kube_namespace
):
    from kubernetes import client

    response = cluster_api.post("/api/v1/projects", {"name": "Diagnosed"}, format="json")
    project_id = response.json()["id"]
    wait_for(lambda: Project.objects.get(pk=project_id).status == "RUNNING", timeout=30, what="RUNNING")
    sandbox = Sandbox.objects.get(project_id=project_id)
    token = Environment.objects.get(project_id=project_id, key="TTYD_ACCESS_TOKEN").value
    kubesim.reset_stats()
    first = cluster_api.get(f"/api/v1/projects/{project_id}/diagnostics")
    assert first.status_code == 200
    assert first.json()["available"] is False and first.json()["refreshing"] is True
    # the request itself asked nothing of the cluster
    assert not kubesim.stats()["by_verb"].get("list")
    body = wait_for(
        lambda: (
            (r := cluster_api.get(f"/api/v1/projects/{project_id}/diagnostics").json())["available"] and r
        ),
        what="diagnostics fetched",
    )
    kinds = {(o["kind"], o["name"]) for o in body["objects"]}
    assert ("StatefulSet", sandbox.k8s_name) in kinds and ("Pod", f"{sandbox.k8s_name}-0") in kinds
    pod = body["pods"][0]
    assert {"type": "Ready", "status": "True", "reason": ""} in pod["conditions"]
    main = next(c for c in pod["containers"] if c["name"] == sandbox.k8s_name)
    assert main["restart_count"] == 0 and main["state"] == "running"
    assert body["age_seconds"] is not None and body["age_seconds"] < 60
    # no secret value in what is shown, log tails included
    assert token not in str(body)
    # the page shows the panel; another user's project is a 404
    page = cluster_api.get(f"/projects/{project_id}/")
    if page.status_code == 200:
        assert "Diagnostics" in page.content.decode()
    core = client.CoreV1Api(kubesim.api_client(kube_namespace))
    assert core.read_namespaced_pod(f"{sandbox.k8s_name}-0", kube_namespace)


def test_diagnostics_of_another_users_project_are_a_404(api, other_user):
    from tests.factories import ProjectFactory

    theirs = ProjectFactory(owner=other_user)
    assert api.get(f"/api/v1/projects/{theirs.pk}/diagnostics").status_code == 404


def test_log_tails_are_redacted(cluster_user, kubesim, kube_namespace, settings):
    """A container that prints a secret: the panel shows •••• instead."""
    from core.text import redact

    secret = "s3cr3t-value-of-the-project"
    assert redact(f"connecting with {secret}\n", [secret]) == "connecting with ••••\n"
    assert diagnostics.cache_key("x") != diagnostics.pending_key("x")
