"""A new kubeconfig is checked before it replaces a working one (issue 20, item 2): against kubesim, with
the same check the worker runs (through the egress policy)."""

import re
import socket

import pytest
from rest_framework.test import APIClient

from core.audit import SYSTEM
from projects import services as project_services
from reconcile.checks import check_kubeconfig
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from tests.factories import UserFactory
from userconfig import services
from userconfig.models import ConfigKey, UserConfig

pytestmark = pytest.mark.django_db(transaction=True)


def unreachable(text: str) -> str:
    """The same kubeconfig pointed at a 127.0.0.1 port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{port}", text)


@pytest.fixture
def fast_checks(settings):
    """The worker's per-user check interval made short (the worker runs in this process)."""
    settings.KUBECONFIG_CHECK_INTERVAL_SECONDS = 0.5


@pytest.fixture
def working(kubesim, kube_namespace):
    """A user whose kubeconfig (for kube_namespace) passed its check, and their API client."""
    user = UserFactory()
    services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace), actor=SYSTEM)
    assert check_kubeconfig(user.pk)[0] == "OK"
    client = APIClient()
    client.force_authenticate(user)
    return user, client


def state(client):
    response = client.get("/api/v1/me/kubeconfig")
    assert response.status_code == 200
    return response.json()


def test_a_broken_new_kubeconfig_does_not_replace_the_working_one(
    working, kubesim, kube_namespace, celery_worker
):
    user, client = working
    broken = unreachable(kubesim.kubeconfig(kube_namespace))
    response = client.put("/api/v1/me/kubeconfig", {"kubeconfig": broken}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["check_status"] == "OK"  # the working one, still in use
    assert body["pending"]["check_status"] == "PENDING"
    assert "apiVersion" not in str(body)  # never the content

    check_kubeconfig(user.pk)  # what the worker runs; last try: the failure is recorded
    body = state(client)
    assert body["check_status"] == "OK"
    assert body["pending"]["check_status"] == "UNREACHABLE"
    port = re.search(r"127\.0\.0\.1:(\d+)", broken).group(1)
    assert body["pending"]["check_message"].startswith(f"Cannot reach the cluster at 127.0.0.1:{port}")
    assert body["pending"]["server_address"] == f"127.0.0.1:{port}"
    assert UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG).value == kubesim.kubeconfig(
        kube_namespace
    )

    # A project created now reconciles on the old (working) cluster.
    project = project_services.project_create(owner=user, name="Still here", actor=SYSTEM)
    sandbox = Sandbox.objects.get(project=project)
    wait_for(lambda: Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING", timeout=60, what="running")
    sandbox.refresh_from_db()
    assert sandbox.k8s_namespace == kube_namespace  # RUNNING there: the broken one reaches nothing

    # Discard: the pending one goes, the working one stays.
    assert client.delete("/api/v1/me/kubeconfig/pending").status_code == 204
    assert state(client)["pending"] is None
    assert client.delete("/api/v1/me/kubeconfig/pending").status_code == 404


def test_use_it_anyway_promotes_the_failed_one(working, kubesim, kube_namespace):
    user, client = working
    broken = unreachable(kubesim.kubeconfig(kube_namespace))
    client.put("/api/v1/me/kubeconfig", {"kubeconfig": broken}, format="json")
    check_kubeconfig(user.pk)
    response = client.post("/api/v1/me/kubeconfig/pending/accept")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["pending"] is None
    assert body["check_status"] == "UNREACHABLE"  # honest: it is in use, and it still fails
    assert UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG).value == broken
    assert client.post("/api/v1/me/kubeconfig/pending/accept").status_code == 404


def test_a_good_new_kubeconfig_replaces_the_old_after_its_check(fast_checks, working, kubesim, celery_worker):
    user, client = working
    other = kubesim.kubeconfig("default")
    response = client.put("/api/v1/me/kubeconfig", {"kubeconfig": other}, format="json")
    assert response.json()["pending"]["namespace"] == "default"
    assert response.json()["namespace"] != "default"  # not yet
    # The worker checks it and promotes it.
    wait_for(lambda: state(client)["pending"] is None, timeout=30, what="the new kubeconfig promoted")
    body = state(client)
    assert (body["namespace"], body["check_status"]) == ("default", "OK")
    assert UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG).value == other


def test_stranding_is_still_refused_at_promotion(working, kubesim, kube_namespace, celery_worker):
    user, client = working
    project = project_services.project_create(owner=user, name="Lives here", actor=SYSTEM)
    sandbox = Sandbox.objects.get(project=project)
    wait_for(lambda: Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING", timeout=60, what="running")
    # Saving one for another namespace is refused at once, as before.
    response = client.put(
        "/api/v1/me/kubeconfig", {"kubeconfig": unreachable(kubesim.kubeconfig("elsewhere"))}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "kubeconfig_would_strand"
    assert state(client)["pending"] is None


def test_a_first_kubeconfig_takes_effect_at_once(kubesim, kube_namespace):
    user = UserFactory()
    client = APIClient()
    client.force_authenticate(user)
    broken = unreachable(kubesim.kubeconfig(kube_namespace))
    body = client.put("/api/v1/me/kubeconfig", {"kubeconfig": broken}, format="json").json()
    assert (body["configured"], body["pending"]) == (True, None)
    # And over a failing one, a new one replaces it at once too (nothing working to protect).
    check_kubeconfig(user.pk)
    body = client.put(
        "/api/v1/me/kubeconfig", {"kubeconfig": kubesim.kubeconfig(kube_namespace)}, format="json"
    )
    assert body.json()["pending"] is None
    assert body.json()["check_status"] == "PENDING"
