"""End to end: the API records intent, a real Celery worker reconciles it on kubesim --simulate."""

import base64

import pytest
from kubernetes import client

from projects.models import Environment, Project
from sandboxes.models import Database, ResourceEvent, Sandbox
from tests.reconcile.conftest import wait_for
from userconfig.models import UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def project_status(project_id):
    project = Project.objects.filter(pk=project_id).first()
    return project.status if project else None


def create_project(api, name="Web Shop"):
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def test_create_reaches_running_with_every_object(cluster_api, beat, kubesim, kube_namespace, core, apps_api):
    body = create_project(cluster_api)
    wait_for(lambda: project_status(body["id"]) == "RUNNING", what="project RUNNING")
    sandbox = Sandbox.objects.get(project_id=body["id"])
    name = sandbox.k8s_name
    sts = apps_api.read_namespaced_stateful_set(name, kube_namespace)
    assert sts.status.ready_replicas == 1
    assert sts.metadata.labels["app.kubernetes.io/managed-by"] == "tenter"
    core.read_namespaced_service(f"{name}-service", kube_namespace)
    net = client.NetworkingV1Api(kubesim.api_client(kube_namespace))
    hosts = {i.spec.rules[0].host for i in net.list_namespaced_ingress(kube_namespace).items}
    assert hosts == {f"{name}-{k}.{sandbox.ingress_domain}" for k in ("app", "ttyd", "filebrowser")}
    secret = core.read_namespaced_secret(f"{name}-env", kube_namespace)
    token = Environment.objects.get(project_id=body["id"], key="TTYD_ACCESS_TOKEN").value
    assert base64.b64decode(secret.data["TTYD_ACCESS_TOKEN"]).decode() == token
    # no secret value sits in the StatefulSet spec
    assert token not in str(sts.to_dict())
    timeline = list(
        ResourceEvent.objects.filter(resource_id=sandbox.pk)
        .order_by("created_at")
        .values_list("to_status", flat=True)
    )
    assert timeline == ["CREATING", "STARTING", "RUNNING"]


def test_kubeconfig_check_runs_in_the_background(cluster_user, celery_worker):
    config = wait_for(
        lambda: UserConfig.objects.filter(user=cluster_user, check_status="OK").first(), what="check OK"
    )
    assert config.check_message.startswith("Can manage sandboxes in namespace")
    assert config.checked_at is not None


def test_a_token_without_permission_fails_the_check_with_the_permission(
    transactional_db, kubesim, kube_namespace, celery_worker
):
    from core.audit import SYSTEM
    from tests.factories import UserFactory
    from userconfig import services

    kubesim.add_token("no-sts", deny=[{"verb": "create", "resource": "statefulsets"}])
    user = UserFactory()
    services.kubeconfig_save(user=user, text=kubesim.kubeconfig(kube_namespace, token="no-sts"), actor=SYSTEM)
    config = wait_for(
        lambda: UserConfig.objects.filter(user=user, check_status="FAILED").first(), what="FAILED"
    )
    assert "create statefulsets.apps" in config.check_message
    assert kube_namespace in config.check_message


def test_stop_and_start_scale_the_statefulset(cluster_api, beat, kube_namespace, apps_api):
    body = create_project(cluster_api)
    wait_for(lambda: project_status(body["id"]) == "RUNNING", what="RUNNING")
    name = Sandbox.objects.get(project_id=body["id"]).k8s_name
    assert cluster_api.post(f"/api/v1/projects/{body['id']}/stop").status_code == 202
    wait_for(lambda: project_status(body["id"]) == "STOPPED", what="STOPPED")
    assert apps_api.read_namespaced_stateful_set(name, kube_namespace).spec.replicas == 0
    assert cluster_api.post(f"/api/v1/projects/{body['id']}/start").status_code == 202
    wait_for(lambda: project_status(body["id"]) == "RUNNING", what="RUNNING again")
    assert apps_api.read_namespaced_stateful_set(name, kube_namespace).status.ready_replicas == 1


def test_env_change_rolls_the_pod_and_removes_deleted_keys(cluster_api, beat, kube_namespace, core, apps_api):
    body = create_project(cluster_api)
    wait_for(lambda: project_status(body["id"]) == "RUNNING", what="RUNNING")
    name = Sandbox.objects.get(project_id=body["id"]).k8s_name
    checksum = apps_api.read_namespaced_stateful_set(name, kube_namespace).spec.template.metadata.annotations
    variables = [{"key": "KEEP", "value": "1"}, {"key": "DROP", "value": "2", "is_secret": True}]
    cluster_api.put(f"/api/v1/projects/{body['id']}/env", {"variables": variables}, format="json")
    wait_for(
        lambda: (
            project_status(body["id"]) == "RUNNING"
            and Sandbox.objects.get(project_id=body["id"]).observed_generation
            == Sandbox.objects.get(project_id=body["id"]).generation
        ),
        what="updated",
    )
    secret = core.read_namespaced_secret(f"{name}-env", kube_namespace)
    assert base64.b64decode(secret.data["DROP"]).decode() == "2"
    assert cluster_api.delete(f"/api/v1/projects/{body['id']}/env/DROP").status_code == 204
    wait_for(
        lambda: "DROP" not in (core.read_namespaced_secret(f"{name}-env", kube_namespace).data or {}),
        what="DROP removed from the Secret",
    )
    wait_for(lambda: project_status(body["id"]) == "RUNNING", what="RUNNING after removal")
    after = apps_api.read_namespaced_stateful_set(name, kube_namespace).spec.template.metadata.annotations
    assert after != checksum  # the pod template changed, so the pod rolled
    events = list(ResourceEvent.objects.filter(project_id=body["id"]).values_list("to_status", flat=True))
    assert "UPDATING" in events


def test_database_reaches_running_and_injects_database_url(cluster_api, beat, kube_namespace, core):
    body = create_project(cluster_api)
    response = cluster_api.post(f"/api/v1/projects/{body['id']}/databases", format="json")
    assert response.status_code == 202
    database_id = response.json()["id"]
    wait_for(lambda: Database.objects.get(pk=database_id).status == "RUNNING", timeout=30, what="db RUNNING")
    wait_for(lambda: project_status(body["id"]) == "RUNNING", timeout=30, what="project RUNNING")
    reveal = cluster_api.get(f"/api/v1/projects/{body['id']}/databases/{database_id}/connection").json()
    assert reveal["username"] == "postgres" and reveal["password"]
    assert reveal["host"].endswith(f".{kube_namespace}.svc")
    name = Sandbox.objects.get(project_id=body["id"]).k8s_name
    wait_for(
        lambda: "DATABASE_URL" in (core.read_namespaced_secret(f"{name}-env", kube_namespace).data or {}),
        what="DATABASE_URL in the sandbox env",
    )
    url = base64.b64decode(
        core.read_namespaced_secret(f"{name}-env", kube_namespace).data["DATABASE_URL"]
    ).decode()
    assert url == reveal["url"]


def test_a_database_beside_the_users_own_database_url_goes_in_the_name_chosen(
    cluster_api, beat, kube_namespace, core
):
    body = create_project(cluster_api)
    env = cluster_api.put(
        f"/api/v1/projects/{body['id']}/env",
        {"variables": [{"key": "DATABASE_URL", "value": "postgres://mine"}]},
        format="json",
    )
    assert env.status_code == 200, env.content
    refused = cluster_api.post(f"/api/v1/projects/{body['id']}/databases", format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "database_url_taken")
    assert "TENTER_DATABASE_URL" in refused.json()["message"]
    bad = cluster_api.post(f"/api/v1/projects/{body['id']}/databases", {"env_key": "1-no"}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_key")
    response = cluster_api.post(
        f"/api/v1/projects/{body['id']}/databases", {"env_key": "TENTER_DATABASE_URL"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["env_key"] == "TENTER_DATABASE_URL"
    database_id = response.json()["id"]
    wait_for(lambda: Database.objects.get(pk=database_id).status == "RUNNING", timeout=30, what="db RUNNING")
    name = Sandbox.objects.get(project_id=body["id"]).k8s_name

    def secret() -> dict:
        return core.read_namespaced_secret(f"{name}-env", kube_namespace).data or {}

    wait_for(lambda: "TENTER_DATABASE_URL" in secret(), what="TENTER_DATABASE_URL in the sandbox env")
    reveal = cluster_api.get(f"/api/v1/projects/{body['id']}/databases/{database_id}/connection").json()
    assert base64.b64decode(secret()["TENTER_DATABASE_URL"]).decode() == reveal["url"]
    assert base64.b64decode(secret()["DATABASE_URL"]).decode() == "postgres://mine"  # untouched
    mine = Environment.objects.get(project_id=body["id"], key="DATABASE_URL")
    assert (mine.value, mine.is_system) == ("postgres://mine", False)
    # The chosen name is Tenter's while the database lives; removing the database removes it.
    taken = cluster_api.put(
        f"/api/v1/projects/{body['id']}/env",
        {"variables": [{"key": "TENTER_DATABASE_URL", "value": "x"}]},
        format="json",
    )
    assert (taken.status_code, taken.json()["code"]) == (400, "system_variable")
    assert cluster_api.delete(f"/api/v1/projects/{body['id']}/databases/{database_id}").status_code in (
        202,
        204,
    )
    assert not Environment.objects.filter(project_id=body["id"], key="TENTER_DATABASE_URL").exists()
    assert Environment.objects.get(project_id=body["id"], key="DATABASE_URL").value == "postgres://mine"


def test_delete_removes_every_object_and_the_project(
    cluster_api, beat, kubesim, kube_namespace, core, apps_api
):
    body = create_project(cluster_api)
    cluster_api.post(f"/api/v1/projects/{body['id']}/databases", format="json")
    wait_for(lambda: project_status(body["id"]) == "RUNNING", timeout=30, what="RUNNING")
    assert cluster_api.delete(f"/api/v1/projects/{body['id']}").status_code == 202
    wait_for(lambda: project_status(body["id"]) is None, timeout=30, what="project gone")
    assert apps_api.list_namespaced_stateful_set(kube_namespace).items == []
    assert (
        core.list_namespaced_service(
            kube_namespace, label_selector="app.kubernetes.io/managed-by=tenter"
        ).items
        == []
    )
    assert (
        core.list_namespaced_secret(
            kube_namespace, label_selector="app.kubernetes.io/managed-by=tenter"
        ).items
        == []
    )
    assert core.list_namespaced_persistent_volume_claim(kube_namespace).items == []
    custom = client.CustomObjectsApi(kubesim.api_client(kube_namespace))
    clusters = custom.list_namespaced_custom_object("apps.kubeblocks.io", "v1", kube_namespace, "clusters")
    assert clusters["items"] == []
    assert ResourceEvent.objects.filter(project_name="Web Shop", to_status="TERMINATED").count() == 2
