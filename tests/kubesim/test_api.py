"""Conformance of kubesim's REST semantics through the official client and a kubeconfig string."""

from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiException

from tests.kubesim.helpers import clients_from_kubeconfig, raw, sts_body


@pytest.fixture
def k(kubesim, kube_namespace):
    return clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))


def cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data or {"k": "v"},
    }


def status_of(e: ApiException) -> dict:
    return json.loads(e.body)


def test_kubeconfig_namespace_and_version(kubesim, kube_namespace, k):
    from kubernetes import client

    assert client.VersionApi(k.api).get_code().major == "1"
    assert k.core.read_namespace(kube_namespace).status.phase == "Active"
    # current context namespace is the one requested
    import yaml

    cfg = yaml.safe_load(kubesim.kubeconfig(kube_namespace))
    assert cfg["contexts"][0]["context"]["namespace"] == kube_namespace
    assert cfg["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")


def test_discovery(k):
    core = raw(k, "GET", "/api/v1")
    names = {r["name"]: r for r in core["resources"]}
    for n in ("namespaces", "secrets", "configmaps", "services", "pods", "persistentvolumeclaims", "events"):
        assert n in names
    assert names["namespaces"]["namespaced"] is False
    assert "watch" in names["configmaps"]["verbs"]
    apps = raw(k, "GET", "/apis/apps/v1")
    an = {r["name"]: r for r in apps["resources"]}
    assert an["statefulsets"]["kind"] == "StatefulSet" and "statefulsets/status" in an
    groups = raw(k, "GET", "/apis")
    gnames = {g["name"]: g for g in groups["groups"]}
    for g in (
        "apps",
        "networking.k8s.io",
        "apiextensions.k8s.io",
        "apps.kubeblocks.io",
        "operations.kubeblocks.io",
        "authorization.k8s.io",
    ):
        assert g in gnames
    assert gnames["apps.kubeblocks.io"]["preferredVersion"]["version"] == "v1"
    kb = raw(k, "GET", "/apis/apps.kubeblocks.io")
    assert [v["version"] for v in kb["versions"]] == ["v1", "v1alpha1"]
    kb1 = raw(k, "GET", "/apis/apps.kubeblocks.io/v1alpha1")
    assert {"clusters", "clusters/status", "opsrequests"} <= {r["name"] for r in kb1["resources"]}
    vers = raw(k, "GET", "/api")
    assert vers["versions"] == ["v1"]


def test_unauthorized(kubesim, kube_namespace):
    bad = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace, token="wrong"))
    with pytest.raises(ApiException) as ei:
        bad.core.list_namespaced_config_map(kube_namespace)
    assert ei.value.status == 401
    body = status_of(ei.value)
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


def test_crud_configmap(k, kube_namespace):
    created = k.core.create_namespaced_config_map(kube_namespace, cm("a", {"app": "x"}))
    md = created.metadata
    assert md.uid and md.resource_version and md.creation_timestamp and md.namespace == kube_namespace
    got = k.core.read_namespaced_config_map("a", kube_namespace)
    assert got.data == {"k": "v"} and got.metadata.uid == md.uid
    lst = k.core.list_namespaced_config_map(kube_namespace)
    assert [i.metadata.name for i in lst.items] == ["a"] and int(lst.metadata.resource_version) >= int(
        md.resource_version
    )
    got.data["k"] = "v2"
    replaced = k.core.replace_namespaced_config_map("a", kube_namespace, got)
    assert replaced.data["k"] == "v2"
    assert int(replaced.metadata.resource_version) > int(md.resource_version)
    # stale resourceVersion -> 409 Conflict
    got.data["k"] = "v3"
    with pytest.raises(ApiException) as ei:
        k.core.replace_namespaced_config_map("a", kube_namespace, got)
    assert ei.value.status == 409 and status_of(ei.value)["reason"] == "Conflict"
    # AlreadyExists
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    assert ei.value.status == 409
    st = status_of(ei.value)
    assert st["reason"] == "AlreadyExists" and st["details"] == {"name": "a", "kind": "configmaps"}
    k.core.delete_namespaced_config_map("a", kube_namespace)
    with pytest.raises(ApiException) as ei:
        k.core.read_namespaced_config_map("a", kube_namespace)
    assert ei.value.status == 404
    st = status_of(ei.value)
    assert st == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "a" not found',
        "reason": "NotFound",
        "details": {"name": "a", "kind": "configmaps"},
        "code": 404,
    }


def test_secret_string_data_and_generate_name(k, kube_namespace):
    s = k.core.create_namespaced_secret(
        kube_namespace, {"metadata": {"generateName": "env-"}, "stringData": {"A": "1"}}
    )
    assert s.metadata.name.startswith("env-") and len(s.metadata.name) == 9
    assert s.data == {"A": "MQ=="} and s.type == "Opaque" and s.string_data is None


def test_namespace_must_exist(k):
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map("does-not-exist", cm("a"))
    assert ei.value.status == 404
    st = status_of(ei.value)
    assert st["message"] == 'namespaces "does-not-exist" not found'
    assert st["details"]["kind"] == "namespaces"


def test_validation_errors(k, kube_namespace):
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map(kube_namespace, cm("Bad_Name"))
    assert ei.value.status == 422
    st = status_of(ei.value)
    assert st["reason"] == "Invalid" and "metadata.name" in st["message"]
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    # services use DNS-1123 labels (no dots)
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_service(
            kube_namespace, {"metadata": {"name": "a.b"}, "spec": {"ports": [{"port": 80}]}}
        )
    assert ei.value.status == 422
    # strict schema: unknown field
    with pytest.raises(ApiException) as ei:
        raw(
            k,
            "POST",
            f"/api/v1/namespaces/{kube_namespace}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "bogus": 1},
        )
    assert ei.value.status == 422 and "bogus" in status_of(ei.value)["message"]
    # StatefulSet selector must match template labels
    body = sts_body("s1")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as ei:
        k.apps.create_namespaced_stateful_set(kube_namespace, body)
    assert ei.value.status == 422 and "selector" in status_of(ei.value)["message"]
    # wrong type in a container
    body = sts_body("s2")
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "x"}]
    with pytest.raises(ApiException) as ei:
        k.apps.create_namespaced_stateful_set(kube_namespace, body)
    assert ei.value.status == 422


def test_custom_resource_validation(k, kube_namespace):
    bad = {
        "apiVersion": "apps.kubeblocks.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg"},
        "spec": {"terminationPolicy": "Nope", "componentSpecs": []},
    }
    with pytest.raises(ApiException) as ei:
        k.custom.create_namespaced_custom_object("apps.kubeblocks.io", "v1", kube_namespace, "clusters", bad)
    assert ei.value.status == 422
    assert "terminationPolicy" in status_of(ei.value)["message"]
    bad["spec"] = {"terminationPolicy": "Delete", "unknownField": True}
    with pytest.raises(ApiException) as ei:
        k.custom.create_namespaced_custom_object("apps.kubeblocks.io", "v1", kube_namespace, "clusters", bad)
    assert ei.value.status == 422 and "unknownField" in status_of(ei.value)["message"]


def test_dry_run(k, kube_namespace):
    out = k.core.create_namespaced_config_map(kube_namespace, cm("dry"), dry_run="All")
    assert out.metadata.name == "dry"
    assert k.core.list_namespaced_config_map(kube_namespace).items == []
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map(kube_namespace, cm("Dry!"), dry_run="All")
    assert ei.value.status == 422


def test_patch_types(k, kube_namespace):
    k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("web", claims=False))
    # strategic merge: containers merged by name, env merged by name
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "env": [{"name": "B", "value": "2"}]},
                        {"name": "side", "image": "busybox:1"},
                    ]
                }
            }
        }
    }
    out = k.apps.patch_namespaced_stateful_set("web", kube_namespace, patch)
    cs = out.spec.template.spec.containers
    assert [c.name for c in cs] == ["main", "side"]
    assert cs[0].image == "nginx:1.27" and [e.name for e in cs[0].env] == ["A", "B"]
    assert out.metadata.generation == 2
    # $patch: delete on a list item
    out = k.apps.patch_namespaced_stateful_set(
        "web",
        kube_namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in out.spec.template.spec.containers] == ["main"]
    # JSON patch (list body)
    out = k.apps.patch_namespaced_stateful_set(
        "web",
        kube_namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        ],
    )
    assert out.spec.replicas == 0 and out.metadata.labels == {"x": "y"}
    # merge patch replaces lists wholesale
    out = raw(
        k,
        "PATCH",
        f"/apis/apps/v1/namespaces/{kube_namespace}/statefulsets/web",
        {"metadata": {"labels": {"x": None, "z": "1"}}},
        "application/merge-patch+json",
    )
    assert out["metadata"]["labels"] == {"z": "1"}
    # failed JSON patch test op
    with pytest.raises(ApiException) as ei:
        k.apps.patch_namespaced_stateful_set(
            "web", kube_namespace, [{"op": "test", "path": "/spec/replicas", "value": 5}]
        )
    assert ei.value.status == 422
    # patch of a missing object
    with pytest.raises(ApiException) as ei:
        k.core.patch_namespaced_config_map("nope", kube_namespace, {"data": {"a": "b"}})
    assert ei.value.status == 404


def test_service_ports_merge_by_port(k, kube_namespace):
    k.core.create_namespaced_service(
        kube_namespace,
        {
            "metadata": {"name": "svc"},
            "spec": {
                "selector": {"app": "x"},
                "ports": [{"name": "app", "port": 3000}, {"name": "ttyd", "port": 7681}],
            },
        },
    )
    out = k.core.patch_namespaced_service(
        "svc", kube_namespace, {"spec": {"ports": [{"name": "fb", "port": 8080}]}}
    )
    assert [p.port for p in out.spec.ports] == [3000, 7681, 8080]
    assert out.spec.cluster_ip and out.spec.ports[0].target_port == 3000


def test_strategic_merge_on_custom_resource_is_415(k, kube_namespace):
    from tests.kubesim.helpers import cluster_v1

    k.custom.create_namespaced_custom_object(
        "apps.kubeblocks.io", "v1", kube_namespace, "clusters", cluster_v1("pg")
    )
    with pytest.raises(ApiException) as ei:
        raw(
            k,
            "PATCH",
            f"/apis/apps.kubeblocks.io/v1/namespaces/{kube_namespace}/clusters/pg",
            {"metadata": {"labels": {"a": "b"}}},
            "application/strategic-merge-patch+json",
        )
    assert ei.value.status == 415 and status_of(ei.value)["reason"] == "UnsupportedMediaType"
    # merge patch works (the client default for custom objects)
    out = k.custom.patch_namespaced_custom_object(
        "apps.kubeblocks.io", "v1", kube_namespace, "clusters", "pg", {"metadata": {"labels": {"a": "b"}}}
    )
    assert out["metadata"]["labels"] == {"a": "b"}
    # v1alpha1 view of the same object
    alpha = k.custom.get_namespaced_custom_object(
        "apps.kubeblocks.io", "v1alpha1", kube_namespace, "clusters", "pg"
    )
    assert alpha["apiVersion"] == "apps.kubeblocks.io/v1alpha1"


def test_generation_and_status_subresource(k, kube_namespace):
    s = k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("g", claims=False))
    assert s.metadata.generation == 1
    # metadata-only change: no bump
    s = k.apps.patch_namespaced_stateful_set("g", kube_namespace, {"metadata": {"annotations": {"a": "1"}}})
    assert s.metadata.generation == 1
    # status via main endpoint is ignored
    s = k.apps.patch_namespaced_stateful_set("g", kube_namespace, {"status": {"replicas": 42}})
    assert s.status.replicas != 42 and s.metadata.generation == 1
    # status via /status changes only status
    s = k.apps.patch_namespaced_stateful_set_status(
        "g", kube_namespace, {"status": {"replicas": 42, "observedGeneration": 9}, "spec": {"replicas": 7}}
    )
    assert s.status.replicas == 42 and s.spec.replicas == 1 and s.metadata.generation == 1
    # spec change bumps generation
    s = k.apps.patch_namespaced_stateful_set("g", kube_namespace, {"spec": {"replicas": 2}})
    assert s.metadata.generation == 2
    # immutable StatefulSet fields
    with pytest.raises(ApiException) as ei:
        k.apps.patch_namespaced_stateful_set("g", kube_namespace, {"spec": {"serviceName": "other"}})
    assert ei.value.status == 422 and "Forbidden" in status_of(ei.value)["message"]


def test_no_op_update_keeps_resource_version(k, kube_namespace):
    a = k.core.create_namespaced_config_map(kube_namespace, cm("same"))
    b = k.core.patch_namespaced_config_map("same", kube_namespace, {"data": {"k": "v"}})
    assert a.metadata.resource_version == b.metadata.resource_version


def test_selectors_and_pagination(k, kube_namespace):
    for i, env in enumerate(["prod", "dev", "dev", "qa"]):
        labels = {"env": env, "i": str(i)}
        if i == 0:
            labels["special"] = "yes"
        k.core.create_namespaced_config_map(kube_namespace, cm(f"c{i}", labels))

    def names(**kw):
        return [c.metadata.name for c in k.core.list_namespaced_config_map(kube_namespace, **kw).items]

    assert names(label_selector="env=dev") == ["c1", "c2"]
    assert names(label_selector="env==dev,i=2") == ["c2"]
    assert names(label_selector="env!=dev") == ["c0", "c3"]
    assert names(label_selector="env in (prod, qa)") == ["c0", "c3"]
    assert names(label_selector="env notin (prod,qa)") == ["c1", "c2"]
    assert names(label_selector="special") == ["c0"]
    assert names(label_selector="!special") == ["c1", "c2", "c3"]
    assert names(field_selector="metadata.name=c3") == ["c3"]
    assert names(field_selector=f"metadata.namespace={kube_namespace},metadata.name!=c3") == [
        "c0",
        "c1",
        "c2",
    ]
    page = k.core.list_namespaced_config_map(kube_namespace, limit=3)
    assert [c.metadata.name for c in page.items] == ["c0", "c1", "c2"] and page.metadata._continue
    page2 = k.core.list_namespaced_config_map(kube_namespace, limit=3, _continue=page.metadata._continue)
    assert [c.metadata.name for c in page2.items] == ["c3"] and not page2.metadata._continue
    allns = k.core.list_config_map_for_all_namespaces(label_selector="special")
    assert any(c.metadata.namespace == kube_namespace for c in allns.items)


def test_finalizers_and_delete(k, kube_namespace):
    body = cm("fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    k.core.create_namespaced_config_map(kube_namespace, body)
    k.core.delete_namespaced_config_map("fin", kube_namespace, propagation_policy="Foreground")
    got = k.core.read_namespaced_config_map("fin", kube_namespace)
    assert got.metadata.deletion_timestamp is not None
    k.core.patch_namespaced_config_map("fin", kube_namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as ei:
        k.core.read_namespaced_config_map("fin", kube_namespace)
    assert ei.value.status == 404
    # DeleteOptions body with preconditions
    c = k.core.create_namespaced_config_map(kube_namespace, cm("pre"))
    from kubernetes.client import V1DeleteOptions, V1Preconditions

    with pytest.raises(ApiException) as ei:
        k.core.delete_namespaced_config_map(
            "pre", kube_namespace, body=V1DeleteOptions(preconditions=V1Preconditions(uid="nope"))
        )
    assert ei.value.status == 409
    k.core.delete_namespaced_config_map(
        "pre",
        kube_namespace,
        body=V1DeleteOptions(
            propagation_policy="Background", preconditions=V1Preconditions(uid=c.metadata.uid)
        ),
    )
    # delete collection by label
    for i in range(3):
        k.core.create_namespaced_config_map(kube_namespace, cm(f"d{i}", {"grp": "a" if i < 2 else "b"}))
    k.core.delete_collection_namespaced_config_map(kube_namespace, label_selector="grp=a")
    assert [c.metadata.name for c in k.core.list_namespaced_config_map(kube_namespace).items] == ["d2"]


def test_namespace_deletion_cascades(kubesim, k):
    ns = "cascade-" + __import__("secrets").token_hex(3)
    kubesim.create_namespace(ns)
    k.core.create_namespaced_config_map(ns, cm("a"))
    k.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    held = cm("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    k.core.create_namespaced_config_map(ns, held)
    k.core.delete_namespace(ns)
    assert k.core.read_namespace(ns).status.phase == "Terminating"
    assert [c.metadata.name for c in k.core.list_namespaced_config_map(ns).items] == ["held"]
    assert k.core.list_namespaced_secret(ns).items == []
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map(ns, cm("new"))
    assert ei.value.status == 403
    k.core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as ei:
        k.core.read_namespace(ns)
    assert ei.value.status == 404


def test_owner_references_garbage_collected(k, kube_namespace):
    owner = k.core.create_namespaced_config_map(kube_namespace, cm("owner"))
    dep = cm("dep")
    dep["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    k.core.create_namespaced_config_map(kube_namespace, dep)
    k.core.delete_namespaced_config_map("owner", kube_namespace)
    assert k.core.list_namespaced_config_map(kube_namespace).items == []


def test_ingress_and_crd_via_api(k, kube_namespace):
    ing = {
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "a.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 3000}}},
                            }
                        ]
                    },
                }
            ],
            "tls": [{"hosts": ["a.example.com"], "secretName": "wildcard"}],
        },
    }
    out = k.net.create_namespaced_ingress(kube_namespace, ing)
    assert out.metadata.generation == 1
    group = f"g{kube_namespace[-6:]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    k.ext.create_custom_resource_definition(crd)
    w = k.custom.create_namespaced_custom_object(
        group,
        "v1",
        kube_namespace,
        "widgets",
        {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
    )
    assert w["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as ei:
        k.custom.create_namespaced_custom_object(
            group,
            "v1",
            kube_namespace,
            "widgets",
            {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": "w2"},
                "spec": {"size": "big"},
            },
        )
    assert ei.value.status == 422
    k.ext.delete_custom_resource_definition(f"widgets.{group}")
    with pytest.raises(ApiException) as ei:
        k.custom.list_namespaced_custom_object(group, "v1", kube_namespace, "widgets")
    assert ei.value.status == 404


def test_app_like_objects_built_with_client_models(k, kube_namespace):
    """Objects shaped like the app's (DESIGN §6), built with the client's model classes, validate."""
    from kubernetes import client as c

    labels = {"app.kubernetes.io/managed-by": "tenter", "tenter.dev/project": "demo-abcdefgh"}
    res = c.V1ResourceRequirements(
        requests={"cpu": "250m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
    )
    sts = c.V1StatefulSet(
        metadata=c.V1ObjectMeta(name="demo-abcdefgh", labels=labels),
        spec=c.V1StatefulSetSpec(
            replicas=1,
            service_name="demo-abcdefgh",
            selector=c.V1LabelSelector(match_labels={"tenter.dev/project": "demo-abcdefgh"}),
            template=c.V1PodTemplateSpec(
                metadata=c.V1ObjectMeta(labels=labels, annotations={"tenter.dev/env-checksum": "0"}),
                spec=c.V1PodSpec(
                    automount_service_account_token=False,
                    security_context=c.V1PodSecurityContext(
                        run_as_non_root=True, run_as_user=1000, fs_group=1000
                    ),
                    containers=[
                        c.V1Container(
                            name="runtime",
                            image="ghcr.io/example/runtime:1.0",
                            ports=[
                                c.V1ContainerPort(container_port=3000, name="app"),
                                c.V1ContainerPort(container_port=7681, name="ttyd"),
                            ],
                            env_from=[c.V1EnvFromSource(secret_ref=c.V1SecretEnvSource(name="demo-env"))],
                            resources=res,
                            volume_mounts=[c.V1VolumeMount(name="home", mount_path="/home/dev")],
                            readiness_probe=c.V1Probe(tcp_socket=c.V1TCPSocketAction(port="ttyd")),
                        ),
                        c.V1Container(
                            name="filebrowser",
                            image="filebrowser/filebrowser:v2",
                            ports=[c.V1ContainerPort(container_port=8080)],
                        ),
                    ],
                ),
            ),
            volume_claim_templates=[
                c.V1PersistentVolumeClaim(
                    metadata=c.V1ObjectMeta(name="home"),
                    spec=c.V1PersistentVolumeClaimSpec(
                        access_modes=["ReadWriteOnce"],
                        resources=c.V1VolumeResourceRequirements(requests={"storage": "10Gi"}),
                    ),
                )
            ],
        ),
    )
    k.apps.create_namespaced_stateful_set(kube_namespace, sts)
    svc = c.V1Service(
        metadata=c.V1ObjectMeta(name="demo-abcdefgh", labels=labels),
        spec=c.V1ServiceSpec(
            selector={"tenter.dev/project": "demo-abcdefgh"},
            ports=[
                c.V1ServicePort(name=n, port=p, target_port=p)
                for n, p in (("app", 3000), ("ttyd", 7681), ("fb", 8080))
            ],
        ),
    )
    k.core.create_namespaced_service(kube_namespace, svc)
    ing = c.V1Ingress(
        metadata=c.V1ObjectMeta(
            name="demo-abcdefgh-app",
            labels=labels,
            annotations={
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-body-size": "32m",
            },
        ),
        spec=c.V1IngressSpec(
            ingress_class_name="nginx",
            tls=[c.V1IngressTLS(hosts=["demo-abcdefgh-app.example.com"], secret_name="wildcard-cert")],
            rules=[
                c.V1IngressRule(
                    host="demo-abcdefgh-app.example.com",
                    http=c.V1HTTPIngressRuleValue(
                        paths=[
                            c.V1HTTPIngressPath(
                                path="/",
                                path_type="Prefix",
                                backend=c.V1IngressBackend(
                                    service=c.V1IngressServiceBackend(
                                        name="demo-abcdefgh", port=c.V1ServiceBackendPort(number=3000)
                                    )
                                ),
                            )
                        ]
                    ),
                )
            ],
        ),
    )
    k.net.create_namespaced_ingress(kube_namespace, ing)
    k.core.create_namespaced_secret(
        kube_namespace,
        c.V1Secret(
            metadata=c.V1ObjectMeta(name="demo-env", labels=labels),
            string_data={"DATABASE_URL": "postgres://x"},
        ),
    )
    # replace with the object read back (status included) works and does not bump generation
    # (the simulator writes status concurrently, so retry on 409 like a real client would)
    for _ in range(20):
        got = k.apps.read_namespaced_stateful_set("demo-abcdefgh", kube_namespace)
        try:
            again = k.apps.replace_namespaced_stateful_set("demo-abcdefgh", kube_namespace, got)
            break
        except ApiException as e:
            assert e.status == 409
    assert again.metadata.generation == 1
