"""Warm pools end to end: refill through the real worker on kubesim --simulate, creates that take a
warm sandbox and bind it (labels, Ingresses, env through exec, new credentials, pod not restarted),
racing creates, opting out, and creates the pool does not match."""

import base64
import threading

import pytest
from django.conf import settings
from django.db import connection
from kubernetes import client

from core.audit import SYSTEM, Actor, ActorKind
from projects import pools, services
from projects.models import Environment, PoolPolicy, Project
from reconcile import manifests
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from tests.tasks.test_tasks_e2e import in_pod
from userconfig import services as userconfig_services
from userconfig.models import CheckStatus, ConfigKey, UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POOL = manifests.POOL_LABEL
PROJECT = manifests.PROJECT_LABEL


@pytest.fixture
def policy(db):
    return PoolPolicy.objects.create(image=settings.RUNTIME_IMAGE, size="small", target=2)


@pytest.fixture
def checked(cluster_user, celery_worker):
    wait_for(
        lambda: UserConfig.objects.filter(
            user=cluster_user, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK
        ).exists(),
        what="kubeconfig check OK",
    )
    return cluster_user


def idle_running(user, policy):
    return list(
        Sandbox.objects.filter(
            project__owner=user, project__pool=policy, status="RUNNING", binding=False
        ).order_by("created_at")
    )


def fill(user, policy, n=None):
    n = policy.target if n is None else n
    pools.refill_user(user=user, policy=policy, actor=SYSTEM, batch=n)
    return wait_for(
        lambda: len(idle_running(user, policy)) == n and idle_running(user, policy), what="pool full"
    )


def apis(kubesim, namespace):
    api_client = kubesim.api_client(namespace)
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.NetworkingV1Api(api_client)


def create(user, name, size=None):
    return services.project_create(
        owner=user, name=name, size=size, actor=Actor(kind=ActorKind.USER, user=user)
    )


def test_refill_reaches_the_target_with_pool_members_that_belong_to_no_project(
    checked, policy, beat, kubesim, kube_namespace, cluster_api
):
    members = fill(checked, policy)
    core, apps, net = apis(kubesim, kube_namespace)
    for sandbox in members:
        sts = apps.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
        for labels in (sts.metadata.labels, sts.spec.template.metadata.labels):
            assert labels[POOL] == str(policy.pk) and PROJECT not in labels
            assert labels[manifests.OWNER_LABEL] == str(checked.pk)
        secret = core.read_namespaced_secret(f"{sandbox.k8s_name}-env", kube_namespace)
        assert secret.metadata.labels[POOL] == str(policy.pk) and PROJECT not in secret.metadata.labels
    assert net.list_namespaced_ingress(kube_namespace).items == []  # no public hosts
    # another round creates nothing more: the pool is at its target
    assert pools.refill_user(user=checked, policy=policy, actor=SYSTEM) == 0
    # the user sees no project of the pool, anywhere
    assert cluster_api.get("/api/v1/projects").json()["count"] == 0
    assert Project.objects.filter(owner=checked).count() == 0


def test_a_create_binds_a_warm_sandbox_without_restarting_it(checked, policy, beat, kubesim, kube_namespace):
    # an agent key the user set before the pool filled: the bound project's env carries it
    userconfig_services.agent_settings_update(user=checked, actor=SYSTEM, api_key="sk-warm-0123456789")
    member = fill(checked, policy, 1)[0]
    core, apps, net = apis(kubesim, kube_namespace)
    pod_uid = core.read_namespaced_pod(f"{member.k8s_name}-0", kube_namespace).metadata.uid
    pool_env = {e.key: e.value for e in Environment.objects.filter(project_id=member.project_id)}

    project = create(checked, "Web Shop")
    assert project.pk == member.project_id and project.status == "UPDATING"
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="bound project RUNNING")
    sandbox = Sandbox.objects.get(project=project)
    assert sandbox.pk == member.pk and sandbox.k8s_name == member.k8s_name and not sandbox.binding
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (1, 0)

    # the same pod: never restarted
    pod = core.read_namespaced_pod(f"{sandbox.k8s_name}-0", kube_namespace)
    assert pod.metadata.uid == pod_uid
    assert pod.metadata.labels[PROJECT] == str(project.pk) and POOL not in pod.metadata.labels
    # the project's labels on its objects, and its Ingresses
    sts = apps.read_namespaced_stateful_set(sandbox.k8s_name, kube_namespace)
    service = core.read_namespaced_service(f"{sandbox.k8s_name}-service", kube_namespace)
    secret = core.read_namespaced_secret(f"{sandbox.k8s_name}-env", kube_namespace)
    for labels in (sts.metadata.labels, service.metadata.labels, secret.metadata.labels):
        assert labels[PROJECT] == str(project.pk) and POOL not in labels
    hosts = {i.spec.rules[0].host for i in net.list_namespaced_ingress(kube_namespace).items}
    assert hosts == {
        f"{sandbox.k8s_name}-{k}.{sandbox.ingress_domain}" for k in ("app", "ttyd", "filebrowser")
    }

    # new credentials: none of the pool's is left, in the database, the Secret or the running pod
    env = {e.key: e.value for e in Environment.objects.filter(project=project)}
    for key in ("TTYD_ACCESS_TOKEN", "FILE_BROWSER_USERNAME", "FILE_BROWSER_PASSWORD"):
        assert env[key] and env[key] != pool_env[key]
    # the heartbeat token stays what the running pod has, so its activity reports keep counting
    assert env["TENTER_HEARTBEAT_TOKEN"] == pool_env["TENTER_HEARTBEAT_TOKEN"]
    heartbeat = in_pod(sandbox, 'printf %s "$TENTER_HEARTBEAT_TOKEN"').stdout
    services.heartbeat(sandbox_id=sandbox.pk, token=heartbeat)
    assert Sandbox.objects.get(pk=sandbox.pk).last_activity_at is not None
    assert base64.b64decode(secret.data["TTYD_ACCESS_TOKEN"]).decode() == env["TTYD_ACCESS_TOKEN"]
    files = in_pod(sandbox, 'cat "$HOME/.tenter/ttyd-token"; echo; cat "$HOME/.tenter/filebrowser"')
    assert files.stdout.splitlines() == [
        env["TTYD_ACCESS_TOKEN"],
        f"{env['FILE_BROWSER_USERNAME']}:{env['FILE_BROWSER_PASSWORD']}",
    ]
    # the project's env reaches a command run in the sandbox (its shell sources the file)
    script = '. "$HOME/.tenter/env"; echo "$PROJECT_NAME|$ANTHROPIC_AUTH_TOKEN|$TTYD_ACCESS_TOKEN"'
    shown = in_pod(sandbox, script)
    assert shown.stdout.strip() == f"Web Shop|sk-warm-0123456789|{env['TTYD_ACCESS_TOKEN']}"
    bashrc = in_pod(sandbox, 'cat "$HOME/.bashrc"').stdout
    assert ".tenter/env" in bashrc


def test_a_burst_of_twice_the_pool_gets_the_pool_warm_and_the_rest_cold(
    checked, policy, beat, kubesim, kube_namespace
):
    members = fill(checked, policy)
    warm_ids = {m.project_id for m in members}
    n = 2 * policy.target
    results: list[object] = [None] * n
    start = threading.Barrier(n)

    def one(i):
        try:
            start.wait()
            results[i] = create(checked, f"Burst {i}").pk
        except Exception as exc:  # reported below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results), results
    assert len(set(results)) == n  # every create got its own project
    warm = [r for r in results if r in warm_ids]
    assert sorted(warm) == sorted(warm_ids)  # each warm sandbox bound once, by one create
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (policy.target, n - policy.target)
    wait_for(lambda: Project.objects.filter(owner=checked, status="RUNNING").count() == n, what="all RUNNING")
    assert Sandbox.objects.filter(project_id__in=results).count() == n
    assert not Project.all_objects.filter(pk__in=results, pool__isnull=False).exists()


def test_a_user_who_opts_out_has_no_pool_sandboxes(checked, policy, beat, kubesim, kube_namespace):
    fill(checked, policy)
    pools.set_warm_pool(user=checked, enabled=False, actor=SYSTEM)
    wait_for(lambda: not Project.all_objects.filter(owner=checked).exists(), what="pool drained")
    _, apps, _ = apis(kubesim, kube_namespace)
    wait_for(
        lambda: apps.list_namespaced_stateful_set(kube_namespace).items == [], what="StatefulSets deleted"
    )
    assert pools.refill_user(user=checked, policy=policy, actor=SYSTEM) == 0
    # and a create goes cold, without counting a miss
    project = create(checked, "Cold One")
    assert project.status == "CREATING"
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (0, 0)


def test_a_create_the_pool_does_not_match_goes_cold(checked, policy, beat, kubesim, kube_namespace):
    member = fill(checked, policy, 1)[0]
    other_size = next(s for s in settings.SANDBOX_SIZES if s != "small")
    project = create(checked, "Bigger", size=other_size)
    assert project.status == "CREATING" and project.pk != member.project_id
    assert idle_running(checked, policy) == [member]
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (0, 0)


def test_an_empty_pool_is_a_miss_and_a_cold_start(checked, policy, beat):
    project = create(checked, "First")
    assert project.status == "CREATING"
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (0, 1)
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="cold RUNNING")


def test_verification_finds_no_drift_in_pool_sandboxes_nor_in_a_bound_one(
    checked, policy, beat, kubesim, kube_namespace
):
    from reconcile import verify

    members = fill(checked, policy)
    project = create(checked, "Verified")
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="bound RUNNING")
    core, _, net = apis(kubesim, kube_namespace)
    pod_uid = core.read_namespaced_pod(f"{members[0].k8s_name}-0", kube_namespace).metadata.uid
    for _ in range(2):  # the first round takes the baselines, the second compares with them
        result = verify.verify_round(batch=10)
        assert result.drifted == [] and result.failed == 0
    assert len(net.list_namespaced_ingress(kube_namespace).items) == 3  # the bound one's only
    assert core.read_namespaced_pod(f"{members[0].k8s_name}-0", kube_namespace).metadata.uid == pod_uid


def test_a_warm_sandbox_whose_pod_is_gone_is_bound_cold(checked, policy, beat, kubesim, kube_namespace):
    from sandboxes.models import ResourceEvent

    member = fill(checked, policy, 1)[0]
    core, apps, _ = apis(kubesim, kube_namespace)
    apps.patch_namespaced_stateful_set(member.k8s_name, kube_namespace, {"spec": {"replicas": 0}})
    wait_for(
        lambda: (
            not [
                p
                for p in core.list_namespaced_pod(kube_namespace).items
                if p.metadata.name.startswith(member.k8s_name)
            ]
        ),
        what="pod gone",
    )
    project = create(checked, "Late")
    assert project.pk == member.project_id
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="RUNNING")
    reasons = list(ResourceEvent.objects.filter(resource_id=member.pk).values_list("reason", flat=True))
    assert "bound_cold" in reasons
    sandbox = Sandbox.objects.get(pk=member.pk)
    assert sandbox.pinned_checksum == "" and not sandbox.binding
    sts = apps.read_namespaced_stateful_set(member.k8s_name, kube_namespace)
    assert sts.spec.replicas == 1
    assert sts.spec.template.metadata.labels[PROJECT] == str(project.pk)  # its project's own template
    shown = in_pod(sandbox, 'printf %s "$PROJECT_NAME"')
    assert shown.stdout == "Late"


def test_a_bound_sandbox_restarted_later_runs_its_projects_own_template(
    checked, policy, beat, kubesim, kube_namespace
):
    member = fill(checked, policy, 1)[0]
    project = create(checked, "Restarted")
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="bound RUNNING")
    sandbox = Sandbox.objects.get(project=project)
    assert sandbox.pinned_checksum  # bound: still the pool's pod template
    # the shell reads the env file only in the pool's pod
    assert in_pod(sandbox, 'printf %s "$TENTER_WARM"').stdout == "1"
    services.project_stop(project=project, actor=SYSTEM)
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "STOPPED", what="STOPPED")
    services.project_start(project=project, actor=SYSTEM)
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", what="RUNNING again")
    sandbox.refresh_from_db()
    assert sandbox.pinned_checksum == ""
    _, apps, _ = apis(kubesim, kube_namespace)
    template = apps.read_namespaced_stateful_set(member.k8s_name, kube_namespace).spec.template
    assert template.metadata.labels[PROJECT] == str(project.pk) and POOL not in template.metadata.labels
    shown = in_pod(sandbox, 'printf "%s|%s" "$PROJECT_NAME" "${TENTER_WARM:-}"')
    assert shown.stdout == "Restarted|"  # its env from the pod itself; the env file is no longer read
