"""Simulated controllers: StatefulSets, failure modes, KubeBlocks Clusters and OpsRequests."""

from __future__ import annotations

import base64

import pytest
from kubernetes.client import ApiException

from tests.kubesim.helpers import clients_from_kubeconfig, cluster_v1, cluster_v1alpha1, sts_body, wait_for

KB = "apps.kubeblocks.io"


@pytest.fixture
def k(kubesim, kube_namespace):
    return clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))


def sts_ready(k, ns, name):
    s = k.apps.read_namespaced_stateful_set(name, ns)
    st = s.status
    ok = (
        st is not None
        and (st.observed_generation or 0) >= s.metadata.generation
        and (st.ready_replicas or 0) == s.spec.replicas
    )
    return s if ok else None


def test_statefulset_becomes_ready_with_pod_and_pvc(k, kube_namespace):
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("box"))
    pod = wait_for(lambda: k.core.read_namespaced_pod("box-0", kube_namespace))
    assert pod.metadata.labels["app"] == "box"
    assert pod.metadata.owner_references[0].kind == "StatefulSet"
    s = wait_for(lambda: sts_ready(k, kube_namespace, "box"))
    st = s.status
    assert (
        st.replicas,
        st.ready_replicas,
        st.current_replicas,
        st.updated_replicas,
        st.available_replicas,
    ) == (1, 1, 1, 1, 1)
    assert st.current_revision == st.update_revision and st.observed_generation == 1
    pod = k.core.read_namespaced_pod("box-0", kube_namespace)
    assert pod.status.phase == "Running" and pod.status.container_statuses[0].ready is True
    pvc = k.core.read_namespaced_persistent_volume_claim("home-box-0", kube_namespace)
    assert pvc.spec.resources.requests["storage"] == "10Gi"
    wait_for(
        lambda: (
            k.core.read_namespaced_persistent_volume_claim("home-box-0", kube_namespace).status.phase
            == "Bound"
        )
    )


def test_a_bound_claim_grows_but_never_shrinks(k, kube_namespace):
    """PVC updates as the API server takes them: the storage request of a bound claim may grow (the
    simulated volume is expanded at once), a smaller one is refused with 422, and nothing else in the
    spec may change. Every storage class is taken to allow expansion (simplified)."""
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("grow"))
    wait_for(lambda: sts_ready(k, kube_namespace, "grow"))
    claim = "home-grow-0"
    wait_for(
        lambda: k.core.read_namespaced_persistent_volume_claim(claim, kube_namespace).status.phase == "Bound"
    )
    grow = {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    k.core.patch_namespaced_persistent_volume_claim(claim, kube_namespace, grow)
    pvc = wait_for(
        lambda: (
            (p := k.core.read_namespaced_persistent_volume_claim(claim, kube_namespace)).status.capacity[
                "storage"
            ]
            == "20Gi"
            and p
        )
    )
    assert pvc.spec.resources.requests["storage"] == "20Gi"
    with pytest.raises(ApiException) as shrink:
        k.core.patch_namespaced_persistent_volume_claim(
            claim, kube_namespace, {"spec": {"resources": {"requests": {"storage": "15Gi"}}}}
        )
    assert shrink.value.status == 422
    assert (
        "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        in shrink.value.body
    )
    with pytest.raises(ApiException) as other:
        k.core.patch_namespaced_persistent_volume_claim(
            claim, kube_namespace, {"spec": {"accessModes": ["ReadWriteMany"]}}
        )
    assert other.value.status == 422 and "spec is immutable after creation" in other.value.body
    assert (
        k.core.read_namespaced_persistent_volume_claim(claim, kube_namespace).spec.resources.requests[
            "storage"
        ]
        == "20Gi"
    )


def test_statefulset_scale_to_zero_keeps_pvc(k, kube_namespace):
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("sc"))
    wait_for(lambda: sts_ready(k, kube_namespace, "sc"))
    k.apps.patch_namespaced_stateful_set("sc", kube_namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not k.core.list_namespaced_pod(kube_namespace).items)
    s = wait_for(lambda: sts_ready(k, kube_namespace, "sc"))
    assert (s.status.replicas, s.status.ready_replicas) == (0, None)
    assert k.core.read_namespaced_persistent_volume_claim("home-sc-0", kube_namespace)
    k.apps.patch_namespaced_stateful_set("sc", kube_namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: sts_ready(k, kube_namespace, "sc"))


def test_statefulset_rollout_on_template_change(k, kube_namespace):
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("roll"))
    s = wait_for(lambda: sts_ready(k, kube_namespace, "roll"))
    old_uid = k.core.read_namespaced_pod("roll-0", kube_namespace).metadata.uid
    old_rev = s.status.update_revision
    s = k.apps.patch_namespaced_stateful_set(
        "roll",
        kube_namespace,
        {"spec": {"template": {"metadata": {"annotations": {"tenter.dev/env-checksum": "abc"}}}}},
    )
    assert s.metadata.generation == 2
    # not ready right after the change...
    s = wait_for(
        lambda: (lambda x: x if x.status.observed_generation == 2 else None)(
            k.apps.read_namespaced_stateful_set("roll", kube_namespace)
        )
    )
    assert sts_ready(k, kube_namespace, "roll") is None
    # ...then ready again, with a new pod on the new revision
    s = wait_for(lambda: sts_ready(k, kube_namespace, "roll"))
    pod = k.core.read_namespaced_pod("roll-0", kube_namespace)
    assert pod.metadata.uid != old_uid and s.status.update_revision != old_rev
    assert pod.metadata.annotations["tenter.dev/env-checksum"] == "abc"


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("annotation", "ImagePullBackOff"),
        ("image", "ImagePullBackOff"),
        ("annotation", "CrashLoopBackOff"),
        ("image", "CrashLoopBackOff"),
    ],
)
def test_failure_modes(k, kube_namespace, how, reason):
    slug = "imagepull" if reason == "ImagePullBackOff" else "crashloop"
    if how == "annotation":
        body = sts_body("bad", annotations={"kubesim.dev/fail": reason})
    else:
        body = sts_body("bad", image=f"registry.example.com/kubesim-fail-{slug}:1")
    k.apps.create_namespaced_stateful_set(kube_namespace, body)

    def waiting():
        pod = k.core.read_namespaced_pod("bad-0", kube_namespace)
        cs = (pod.status.container_statuses or [None])[0]
        return pod if cs and cs.state.waiting and cs.state.waiting.reason == reason else None

    pod = wait_for(waiting)
    cs = pod.status.container_statuses[0]
    assert cs.ready is False and cs.state.waiting.message
    image = body["spec"]["template"]["spec"]["containers"][0]["image"]
    if reason == "ImagePullBackOff":
        assert pod.status.phase == "Pending"
        assert cs.state.waiting.message == f'Back-off pulling image "{image}"'
    else:
        assert cs.restart_count >= 1
    events = wait_for(
        lambda: k.core.list_namespaced_event(kube_namespace, field_selector="involvedObject.name=bad-0").items
    )
    reasons = {e.reason for e in events}
    assert "BackOff" in reasons
    if reason == "ImagePullBackOff":
        assert "Failed" in reasons
        assert any(e.message == f'Back-off pulling image "{image}"' for e in events)
    assert all(e.involved_object.kind == "Pod" and e.type == "Warning" for e in events)
    import time

    time.sleep(0.5)
    s = k.apps.read_namespaced_stateful_set("bad", kube_namespace)
    assert not s.status.ready_replicas and s.status.replicas == 1


def cluster_phase(k, ns, name, version="v1"):
    return (k.custom.get_namespaced_custom_object(KB, version, ns, "clusters", name).get("status") or {}).get(
        "phase"
    )


@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
def test_cluster_lifecycle(k, kube_namespace, version):
    body = cluster_v1("pg") if version == "v1" else cluster_v1alpha1("pg")
    created = k.custom.create_namespaced_custom_object(KB, version, kube_namespace, "clusters", body)
    assert "cluster.kubeblocks.io/finalizer" in created["metadata"]["finalizers"]
    wait_for(lambda: cluster_phase(k, kube_namespace, "pg", version) == "Creating", timeout=2)
    wait_for(lambda: cluster_phase(k, kube_namespace, "pg", version) == "Running")
    cl = k.custom.get_namespaced_custom_object(KB, version, kube_namespace, "clusters", "pg")
    assert cl["status"]["components"]["postgresql"]["phase"] == "Running"
    sec = k.core.read_namespaced_secret("pg-postgresql-account-postgres", kube_namespace)
    assert (
        base64.b64decode(sec.data["username"]) == b"postgres"
        and len(base64.b64decode(sec.data["password"])) >= 8
    )
    svc = k.core.read_namespaced_service("pg-postgresql", kube_namespace)
    assert svc.spec.ports[0].port == 5432
    # stop/start through componentSpecs[].stop
    comps = cl["spec"]["componentSpecs"]
    comps[0]["stop"] = True
    k.custom.patch_namespaced_custom_object(
        KB, version, kube_namespace, "clusters", "pg", {"spec": {"componentSpecs": comps}}
    )
    wait_for(lambda: cluster_phase(k, kube_namespace, "pg", version) == "Stopped")
    comps[0]["stop"] = False
    k.custom.patch_namespaced_custom_object(
        KB, version, kube_namespace, "clusters", "pg", {"spec": {"componentSpecs": comps}}
    )
    wait_for(lambda: cluster_phase(k, kube_namespace, "pg", version) == "Running")
    # deletion honours the finalizer, removes owned objects
    k.custom.delete_namespaced_custom_object(KB, version, kube_namespace, "clusters", "pg")
    cl = k.custom.get_namespaced_custom_object(KB, version, kube_namespace, "clusters", "pg")
    assert cl["metadata"].get("deletionTimestamp")

    def gone():
        try:
            k.custom.get_namespaced_custom_object(KB, version, kube_namespace, "clusters", "pg")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(gone)
    assert k.core.list_namespaced_secret(kube_namespace).items == []
    assert k.core.list_namespaced_service(kube_namespace).items == []


@pytest.mark.parametrize(
    ("ops_group", "cluster_version"), [("operations.kubeblocks.io", "v1"), ("apps.kubeblocks.io", "v1alpha1")]
)
def test_opsrequest_stop_start(k, kube_namespace, ops_group, cluster_version):
    body = cluster_v1("db") if cluster_version == "v1" else cluster_v1alpha1("db")
    k.custom.create_namespaced_custom_object(KB, cluster_version, kube_namespace, "clusters", body)
    wait_for(lambda: cluster_phase(k, kube_namespace, "db", cluster_version) == "Running")

    def ops(name, typ):
        k.custom.create_namespaced_custom_object(
            ops_group,
            "v1alpha1",
            kube_namespace,
            "opsrequests",
            {
                "apiVersion": f"{ops_group}/v1alpha1",
                "kind": "OpsRequest",
                "metadata": {"name": name},
                "spec": {"clusterName": "db", "type": typ},
            },
        )
        return wait_for(
            lambda: (
                (
                    k.custom.get_namespaced_custom_object(
                        ops_group, "v1alpha1", kube_namespace, "opsrequests", name
                    ).get("status")
                    or {}
                ).get("phase")
                == "Succeed"
            )
        )

    ops("db-stop", "Stop")
    assert cluster_phase(k, kube_namespace, "db", cluster_version) == "Stopped"
    ops("db-start", "Start")
    assert cluster_phase(k, kube_namespace, "db", cluster_version) == "Running"


def test_opsrequest_for_missing_cluster_fails(k, kube_namespace):
    k.custom.create_namespaced_custom_object(
        "operations.kubeblocks.io",
        "v1alpha1",
        kube_namespace,
        "opsrequests",
        {
            "apiVersion": "operations.kubeblocks.io/v1alpha1",
            "kind": "OpsRequest",
            "metadata": {"name": "x"},
            "spec": {"clusterName": "nope", "type": "Stop"},
        },
    )
    wait_for(
        lambda: (
            k.custom.get_namespaced_custom_object(
                "operations.kubeblocks.io", "v1alpha1", kube_namespace, "opsrequests", "x"
            )["status"]["phase"]
            == "Failed"
        )
    )


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_statefulset_delete_removes_pods(k, kube_namespace, policy):
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("del"))
    wait_for(lambda: sts_ready(k, kube_namespace, "del"))
    k.apps.delete_namespaced_stateful_set("del", kube_namespace, propagation_policy=policy)
    wait_for(lambda: not k.apps.list_namespaced_stateful_set(kube_namespace).items)
    wait_for(lambda: not k.core.list_namespaced_pod(kube_namespace).items)
    assert k.core.read_namespaced_persistent_volume_claim("home-del-0", kube_namespace)  # retained
