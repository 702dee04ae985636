"""Manifests (reconcile/manifests.py) and the pure parts of the gateway (reconcile/kube/).

No cluster and no database: built-in kinds are validated with kubernetes-validate (strict) for
Kubernetes 1.28 and 1.33, KubeBlocks kinds with jsonschema against the CRDs in
kubesim/crds/kubeblocks/ (carried in the repository).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import ssl
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from kubesim.crd import DEFAULT_CRD_DIR
from reconcile import manifests, names
from reconcile.kube import cache, kubeconfig
from reconcile.kube.cache import get_kube
from reconcile.kube.client import Kube
from reconcile.kube.errors import (
    KubeconfigInvalid,
    KubeConflict,
    KubeCredentials,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
    parse_retry_after,
    translate,
    translate_errors,
)
from reconcile.kube.kubeconfig import KubeconfigInfo
from reconcile.specs import KUBEBLOCKS_V1, KUBEBLOCKS_V1ALPHA1, DatabaseSpec, SandboxSpec
from tests.k8s_names import is_dns1123_subdomain

K8S_VERSIONS = ("1.28", "1.33")
SECRET_VALUES = ("s3cr3t-VALUE-123", "sk-ant-TOPSECRET-999", "fb-pass-XYZ-777", "p@ss:w/rd?#%-DB")
PROJECT_ID = "0b7c1a9e-4f9e-4a47-9d35-0d2c51f0a4a1"


KUBEBLOCKS_SCHEMAS = DEFAULT_CRD_DIR


def sandbox_spec(**overrides: Any) -> SandboxSpec:
    values: dict[str, Any] = {
        "namespace": "ns-abcdefgh",
        "name": "my-app-abcdefgh",
        "project_id": PROJECT_ID,
        "project_slug": "my-app",
        "project_name": "My App",
        "resource_id": "7f0c2a51-1d7b-4c55-9a43-b2b0d3c0e9f1",
        "owner_id": "42",
        "image": "docker.io/limbo2342/fullstack-web-runtime:sha-ca2470e",
        "filebrowser_image": "filebrowser/filebrowser:v2-s6",
        "cpu_request": "20m",
        "cpu_limit": "2000m",
        "memory_request": "25Mi",
        "memory_limit": "4096Mi",
        "storage_size": "10Gi",
        "domain": "usw.sealos.app",
        "replicas": 1,
        "env": {
            "TTYD_ACCESS_TOKEN": SECRET_VALUES[0],
            "ANTHROPIC_API_KEY": SECRET_VALUES[1],
            "FILE_BROWSER_USERNAME": "fb-user",
            "FILE_BROWSER_PASSWORD": SECRET_VALUES[2],
            "DATABASE_URL": manifests.database_url(
                "postgres", SECRET_VALUES[3], "pg-postgresql.ns.svc", 5432
            ),
            "NODE_ENV": "development",
        },
    }
    values.update(overrides)
    return SandboxSpec(**values)


def database_spec(**overrides: Any) -> DatabaseSpec:
    values: dict[str, Any] = {
        "namespace": "ns-abcdefgh",
        "name": "my-app-db-abcdefgh",
        "project_id": PROJECT_ID,
        "project_slug": "my-app",
        "resource_id": "5a1e3b77-86c4-4f0e-9a3e-0f5d2b6c7d11",
        "owner_id": "42",
        "api_version": KUBEBLOCKS_V1,
    }
    values.update(overrides)
    return DatabaseSpec(**values)


def _secret_forms() -> list[str]:
    forms = []
    for value in SECRET_VALUES:
        forms += [value, base64.b64encode(value.encode()).decode()]
    return forms


# ---------------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate, strict
# ---------------------------------------------------------------------------------------------

SANDBOX_OBJECTS = manifests.sandbox_objects(sandbox_spec())


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "obj", SANDBOX_OBJECTS, ids=[f"{o['kind']}-{o['metadata']['name']}" for o in SANDBOX_OBJECTS]
)
def test_builtin_manifests_validate_strictly(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_stopped_and_variant_sandboxes_validate(version: str) -> None:
    spec = sandbox_spec(replicas=0, ingress_snippets=False, tls_secret_name="", storage_class="fast")
    for obj in manifests.sandbox_objects(spec):
        kubernetes_validate.validate(obj, version, strict=True)


CLUSTER_SETTINGS = {
    "ingress_snippets": False,
    "tls_secret_name": "sandbox-tls",
    "ingress_class": "public-nginx",
    "ingress_annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
    "storage_class": "fast-ssd",
    "image_pull_secrets": ("registry-creds", "mirror-creds"),
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_cluster_settings_reach_the_objects_and_validate(version: str) -> None:
    objects = manifests.sandbox_objects(sandbox_spec(**CLUSTER_SETTINGS))
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}, {"name": "mirror-creds"}]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    for ing in (o for o in objects if o["kind"] == "Ingress"):
        assert ing["spec"]["ingressClassName"] == "public-nginx"
        assert ing["spec"]["tls"][0]["secretName"] == "sandbox-tls"
        annotations = ing["metadata"]["annotations"]
        assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
        assert not any("snippet" in key for key in annotations)


def test_readiness_means_the_terminal_and_file_manager_answer_http() -> None:
    containers = manifests.statefulset(sandbox_spec())["spec"]["template"]["spec"]["containers"]
    main, filebrowser = containers
    assert filebrowser["readinessProbe"]["httpGet"] == {
        "path": "/health",
        "port": "port-8080",
        "scheme": "HTTP",
    }
    command = main["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    # an HTTP request to ttyd with the sandbox's own credential, read from the container's env (the
    # token itself is never written into the spec)
    assert "curl -fsS" in command[2] and "http://127.0.0.1:7681/" in command[2]
    assert '"user:$TTYD_ACCESS_TOKEN"' in command[2]
    assert all("tcpSocket" not in c["readinessProbe"] for c in containers)


def test_the_claim_template_carries_the_owner_label() -> None:
    spec = sandbox_spec()
    claim = manifests.statefulset(spec)["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["labels"][manifests.OWNER_LABEL] == spec.owner_id
    assert claim["metadata"]["labels"][manifests.RESOURCE_LABEL] == spec.resource_id


def test_strict_validation_really_rejects_unknown_fields() -> None:
    sts = manifests.statefulset(sandbox_spec())
    sts["spec"]["template"]["spec"]["containers"][0]["envFromm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, "1.33", strict=True)


def test_apply_order() -> None:
    kinds = [o["kind"] for o in SANDBOX_OBJECTS]
    assert kinds == ["Secret", "Service", "StatefulSet", "Ingress", "Ingress", "Ingress"]


# ---------------------------------------------------------------------------------------------
# KubeBlocks kinds: jsonschema against the CRDs
# ---------------------------------------------------------------------------------------------


_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf")


def _prepare_schema(schema: Any, strict: bool) -> Any:
    """OpenAPI v3 (CRD flavour) -> JSON Schema: int-or-string, nullable, and (strict) no unknown fields."""
    if isinstance(schema, list):
        return [_prepare_schema(s, strict) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _prepare_schema(sub, strict) for name, sub in value.items()}
        elif key in _SUBSCHEMA_KEYS and isinstance(value, dict | list):
            out[key] = _prepare_schema(value, strict)
        elif key == "x-kubernetes-validations":
            continue  # CEL rules are not checked offline
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out["type"] = ["integer", "string"]
        out.pop("anyOf", None)
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        strict
        and out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd(folder: str, filename: str) -> dict[str, Any]:
    path = KUBEBLOCKS_SCHEMAS / folder / filename
    assert path.is_file(), f"CRD file {path} is missing from the repository"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        return yaml.load(fh, Loader=loader)


@functools.cache
def _validator(folder: str, filename: str, version: str) -> jsonschema.Draft7Validator:
    crd = _crd(folder, filename)
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            assert served.get("served"), f"{filename} {version} is not served"
            schema = _prepare_schema(served["schema"]["openAPIV3Schema"], strict=True)
            return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"{folder}/{filename} has no version {version}")


def _validate_crd_object(obj: dict[str, Any], folder: str, filename: str) -> None:
    crd = _crd(folder, filename)
    group, version = obj["apiVersion"].split("/")
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == obj["kind"]
    errors = sorted(_validator(folder, filename, version).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


CLUSTER_CASES = [
    (KUBEBLOCKS_V1, "v1.0.2", "apps.kubeblocks.io_clusters.yaml"),
    (KUBEBLOCKS_V1, "main-13138f46", "apps.kubeblocks.io_clusters.yaml"),
    (KUBEBLOCKS_V1ALPHA1, "v0.9.5", "apps.kubeblocks.io_clusters.yaml"),
    (KUBEBLOCKS_V1ALPHA1, "v1.0.2", "apps.kubeblocks.io_clusters.yaml"),  # 1.0 still serves v1alpha1
]


@pytest.mark.parametrize(("api_version", "folder", "filename"), CLUSTER_CASES)
@pytest.mark.parametrize("stopped", [False, True])
@pytest.mark.parametrize("storage_class", ["", "openebs-backup"])
def test_cluster_validates_against_crd(
    api_version: str, folder: str, filename: str, stopped: bool, storage_class: str
) -> None:
    spec = database_spec(api_version=api_version, stopped=stopped, storage_class=storage_class)
    _validate_crd_object(manifests.database_cluster(spec), folder, filename)


def test_crd_validation_rejects_unknown_fields() -> None:
    cluster = manifests.database_cluster(database_spec())
    cluster["spec"]["componentSpecs"][0]["componentDefRefX"] = "postgresql"
    with pytest.raises(AssertionError, match="componentDefRefX"):
        _validate_crd_object(cluster, "v1.0.2", "apps.kubeblocks.io_clusters.yaml")


def test_cluster_v1_shape() -> None:
    cluster = manifests.database_cluster(database_spec())
    assert cluster["apiVersion"] == "apps.kubeblocks.io/v1"
    spec = cluster["spec"]
    assert spec["clusterDef"] == "postgresql"
    assert spec["topology"] == "replication"
    assert spec["terminationPolicy"] == "Delete"
    component = spec["componentSpecs"][0]
    assert component["name"] == "postgresql"
    assert component["serviceVersion"] == "14.8.0"
    assert component["replicas"] == 1
    assert component["resources"] == {
        "requests": {"cpu": "100m", "memory": "102Mi"},
        "limits": {"cpu": "1000m", "memory": "1024Mi"},
    }
    claim = component["volumeClaimTemplates"][0]
    assert claim["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert "storageClassName" not in claim["spec"]
    assert "stop" not in component
    assert "finalizers" not in cluster["metadata"]


def test_cluster_v1alpha1_shape() -> None:
    cluster = manifests.database_cluster(database_spec(api_version=KUBEBLOCKS_V1ALPHA1, storage_class="sc"))
    spec = cluster["spec"]
    assert spec["clusterDefinitionRef"] == "postgresql"
    assert spec["clusterVersionRef"] == "postgresql-14.8.0"
    assert spec["terminationPolicy"] == "Delete"
    component = spec["componentSpecs"][0]
    assert component["componentDefRef"] == "postgresql"
    assert component["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "sc"
    assert cluster["metadata"]["labels"]["clusterversion.kubeblocks.io/name"] == "postgresql-14.8.0"


def test_stopped_cluster_sets_stop() -> None:
    component = manifests.database_cluster(database_spec(stopped=True))["spec"]["componentSpecs"][0]
    assert component["stop"] is True


@pytest.mark.parametrize("stopped", [True, False])
def test_database_stop_patch(stopped: bool) -> None:
    patch = manifests.database_stop_patch(database_spec(), stopped)
    assert patch[0] == {"op": "test", "path": "/spec/componentSpecs/0/name", "value": "postgresql"}
    assert patch[-1] == {"op": "add", "path": "/spec/componentSpecs/0/stop", "value": stopped}
    json.dumps(patch)


def test_database_spec_rejects_unknown_api_version() -> None:
    with pytest.raises(ValueError):
        database_spec(api_version="apps.kubeblocks.io/v2")


# ---------------------------------------------------------------------------------------------
# Labels and names
# ---------------------------------------------------------------------------------------------

ALL_OBJECTS = [
    *SANDBOX_OBJECTS,
    manifests.database_cluster(database_spec()),
    manifests.database_cluster(database_spec(api_version=KUBEBLOCKS_V1ALPHA1)),
]
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@pytest.mark.parametrize(
    "obj", ALL_OBJECTS, ids=[f"{o['kind']}-{o['metadata']['name']}" for o in ALL_OBJECTS]
)
def test_every_object_is_labelled_and_well_named(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    assert names.is_dns1123_label(meta["name"]), meta["name"]
    assert meta["namespace"] == "ns-abcdefgh"
    object_labels = meta["labels"]
    is_database = obj["kind"] in ("Cluster", "OpsRequest")
    assert object_labels["app.kubernetes.io/managed-by"] == "tenter"
    assert object_labels["app.kubernetes.io/name"] == ("tenter-database" if is_database else "tenter-sandbox")
    assert object_labels["tenter.dev/project"] == PROJECT_ID
    assert object_labels["tenter.dev/owner"] == "42"
    assert object_labels["tenter.dev/resource"]
    assert object_labels["project.fullstackagent.io/name"] == "my-app"
    if is_database:
        assert object_labels["sealos-db-provider-cr"] == "my-app-db-abcdefgh"
        assert object_labels["app.kubernetes.io/instance"] == "my-app-db-abcdefgh"
        assert object_labels["clusterdefinition.kubeblocks.io/name"] == "postgresql"
    else:
        assert object_labels["cloud.sealos.io/app-deploy-manager"] == "my-app-abcdefgh"
    assert manifests.is_managed(object_labels)
    for key, value in object_labels.items():
        assert len(value) <= 63 and _LABEL_VALUE.fullmatch(value), (key, value)


def test_pod_template_is_labelled_and_matches_selector() -> None:
    sts = manifests.statefulset(sandbox_spec())
    template_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert manifests.owned_by(template_labels, sandbox_spec().resource_id)
    for key, value in sts["spec"]["selector"]["matchLabels"].items():
        assert template_labels[key] == value
    assert manifests.service(sandbox_spec())["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


def test_invalid_label_values_are_refused() -> None:
    with pytest.raises(ValueError, match="label"):
        manifests.labels(sandbox_spec(project_slug="x" * 64), "sandbox")
    with pytest.raises(ValueError, match="label"):
        manifests.labels(sandbox_spec(owner_id="user 42"), "sandbox")
    with pytest.raises(ValueError):
        manifests.labels(sandbox_spec(), "volume")  # type: ignore[arg-type]


def test_adoption_rule() -> None:
    rid = "7f0c2a51-1d7b-4c55-9a43-b2b0d3c0e9f1"
    ours = manifests.labels(sandbox_spec(resource_id=rid), "sandbox")
    assert manifests.owned_by(ours, rid)
    assert not manifests.owned_by(ours, "another-resource")
    assert not manifests.owned_by({**ours, "app.kubernetes.io/managed-by": "helm"}, rid)
    assert not manifests.owned_by({"tenter.dev/resource": rid}, rid)
    assert not manifests.owned_by(None, rid)
    assert not manifests.owned_by({}, rid)
    assert not manifests.is_managed(None)
    assert not manifests.is_managed({"app": "x"})


def test_object_refs_cover_every_object() -> None:
    refs = manifests.sandbox_object_refs("my-app-abcdefgh")
    for obj in SANDBOX_OBJECTS:
        assert (obj["kind"], obj["metadata"]["name"]) in refs
    assert ("PersistentVolumeClaim", "vn-homevn-fulling-my-app-abcdefgh-0") in refs
    assert len(set(refs)) == len(refs) == len(SANDBOX_OBJECTS) + 1
    assert refs[-1][0] == "PersistentVolumeClaim"  # deleted last


# ---------------------------------------------------------------------------------------------
# Env, checksum and secrecy
# ---------------------------------------------------------------------------------------------


def test_no_secret_value_outside_the_secret() -> None:
    spec = sandbox_spec()
    public = [manifests.statefulset(spec), manifests.service(spec), *manifests.ingresses(spec)]
    dumped = json.dumps(public)
    for form in _secret_forms():
        assert form not in dumped, form
    # ...and neither do the URLs
    assert not any(form in json.dumps(manifests.urls(spec.name, spec.domain)) for form in _secret_forms())


def test_env_secret_holds_every_var_base64() -> None:
    spec = sandbox_spec()
    secret = manifests.env_secret(spec)
    assert secret["metadata"]["name"] == "my-app-abcdefgh-env"
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert manifests.secret_values(secret) == dict(spec.env)
    assert set(secret["data"]) == set(spec.env)


def test_removed_keys_disappear_from_the_secret() -> None:
    env = dict(sandbox_spec().env)
    env.pop("ANTHROPIC_API_KEY")
    secret = manifests.env_secret(sandbox_spec(env=env))
    assert "ANTHROPIC_API_KEY" not in secret["data"]


def test_env_secret_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="environment variable"):
        manifests.env_secret(sandbox_spec(env={"BAD-KEY": "x"}))


def test_env_checksum_follows_the_env() -> None:
    base = sandbox_spec()
    checksum = manifests.env_checksum(base.env)
    assert re.fullmatch(r"[0-9a-f]{16}", checksum)
    assert manifests.env_checksum(dict(reversed(list(base.env.items())))) == checksum  # order-free
    changed = {**base.env, "NODE_ENV": "production"}
    removed = {k: v for k, v in base.env.items() if k != "NODE_ENV"}
    assert manifests.env_checksum(changed) != checksum
    assert manifests.env_checksum(removed) != checksum
    # no ambiguity between key/value boundaries
    assert manifests.env_checksum({"A": "1\nB=2"}) != manifests.env_checksum({"A": "1", "B": "2"})

    def annotation(spec: SandboxSpec) -> str:
        return manifests.statefulset(spec)["spec"]["template"]["metadata"]["annotations"][
            "tenter.dev/env-checksum"
        ]

    assert annotation(base) == checksum
    assert annotation(sandbox_spec(env=changed)) == manifests.env_checksum(changed)
    assert annotation(sandbox_spec(env=changed)) != annotation(base)


def test_spec_env_is_read_only_copy() -> None:
    env = {"A": "1"}
    spec = sandbox_spec(env=env)
    env["A"] = "2"
    assert spec.env["A"] == "1"
    with pytest.raises(TypeError):
        spec.env["A"] = "3"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# StatefulSet, Service, Ingresses
# ---------------------------------------------------------------------------------------------


def test_statefulset_shape() -> None:
    spec = sandbox_spec()
    sts = manifests.statefulset(spec)
    body = sts["spec"]
    assert body["replicas"] == 1
    assert body["serviceName"] == "my-app-abcdefgh-service"
    assert body["selector"] == {"matchLabels": {"app": "my-app-abcdefgh"}}
    assert body["revisionHistoryLimit"] == 1
    assert body["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    assert sts["metadata"]["annotations"]["originImageName"] == spec.image
    pod = body["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 1001
    assert pod["securityContext"]["fsGroup"] == 1001
    assert pod["securityContext"]["runAsNonRoot"] is True
    init = pod["initContainers"][0]
    assert init["securityContext"] == {"runAsUser": 0, "runAsNonRoot": False}
    main, filebrowser = pod["containers"]
    assert main["name"] == "my-app-abcdefgh"
    assert main["image"] == spec.image
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"port-3000": 3000, "port-7681": 7681}
    assert main["envFrom"] == [{"secretRef": {"name": "my-app-abcdefgh-env"}}]
    assert main["env"] == [{"name": "PROJECT_NAME", "value": "My App"}]
    assert main["resources"] == {
        "requests": {"cpu": "20m", "memory": "25Mi"},
        "limits": {"cpu": "2000m", "memory": "4096Mi"},
    }
    assert (
        "exec" in main["readinessProbe"]
    )  # see test_readiness_means_the_terminal_and_file_manager_answer_http
    assert filebrowser["image"] == spec.filebrowser_image
    assert filebrowser["ports"][0]["containerPort"] == 8080
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in filebrowser["env"]}
    assert refs == {
        "FILE_BROWSER_USERNAME": {"name": "my-app-abcdefgh-env", "key": "FILE_BROWSER_USERNAME"},
        "FILE_BROWSER_PASSWORD": {"name": "my-app-abcdefgh-env", "key": "FILE_BROWSER_PASSWORD"},
    }
    assert all("value" not in e for e in filebrowser["env"])
    assert {v["name"] for v in pod["volumes"]} == {"filebrowser-database", "filebrowser-config"}
    claim = body["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "vn-homevn-fulling"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["annotations"] == {"path": "/home/fulling", "value": "10"}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts == {"vn-homevn-fulling": "/home/fulling"}


def test_stopped_statefulset_has_zero_replicas() -> None:
    assert manifests.statefulset(sandbox_spec(replicas=0))["spec"]["replicas"] == 0


def test_service_shape() -> None:
    svc = manifests.service(sandbox_spec())
    assert svc["metadata"]["name"] == "my-app-abcdefgh-service"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("port-3000", 3000, 3000),
        ("port-7681", 7681, 7681),
        ("port-8080", 8080, 8080),
    ]


def test_ingresses() -> None:
    spec = sandbox_spec()
    by_name = {i["metadata"]["name"]: i for i in manifests.ingresses(spec)}
    expected = {
        "my-app-abcdefgh-app-ingress": ("my-app-abcdefgh-app.usw.sealos.app", 3000),
        "my-app-abcdefgh-ttyd-ingress": ("my-app-abcdefgh-ttyd.usw.sealos.app", 7681),
        "my-app-abcdefgh-filebrowser-ingress": ("my-app-abcdefgh-filebrowser.usw.sealos.app", 8080),
    }
    assert set(by_name) == set(expected)
    for name, (host, port) in expected.items():
        ing = by_name[name]
        rule = ing["spec"]["rules"][0]
        assert rule["host"] == host
        assert is_dns1123_subdomain(host)
        path = rule["http"]["paths"][0]
        assert path["pathType"] == "Prefix" and path["path"] == "/"
        assert path["backend"]["service"] == {"name": "my-app-abcdefgh-service", "port": {"number": port}}
        assert ing["spec"]["tls"] == [{"hosts": [host], "secretName": "wildcard-cert"}]
        assert ing["spec"]["ingressClassName"] == "nginx"
        annotations = ing["metadata"]["annotations"]
        assert annotations["kubernetes.io/ingress.class"] == "nginx"
        assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "300"
        assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "32m"
        assert "nginx.ingress.kubernetes.io/server-snippet" in annotations
        kind = name.removeprefix("my-app-abcdefgh-").removesuffix("-ingress")
        assert (
            ing["metadata"]["labels"]["cloud.sealos.io/app-deploy-manager-domain"]
            == f"my-app-abcdefgh-{kind}"
        )
        has_cors = annotations.get("nginx.ingress.kubernetes.io/enable-cors") == "true"
        assert has_cors is (kind == "filebrowser")
    cors = by_name["my-app-abcdefgh-filebrowser-ingress"]["metadata"]["annotations"]
    assert "Tus-Resumable" in cors["nginx.ingress.kubernetes.io/cors-allow-headers"]
    assert "Upload-Offset" in cors["nginx.ingress.kubernetes.io/cors-expose-headers"]
    assert cors["nginx.ingress.kubernetes.io/cors-max-age"] == "1728000"


def test_ingress_options() -> None:
    spec = sandbox_spec(ingress_snippets=False, tls_secret_name="", ingress_class="traefik")
    for ing in manifests.ingresses(spec):
        assert "nginx.ingress.kubernetes.io/server-snippet" not in ing["metadata"]["annotations"]
        assert "secretName" not in ing["spec"]["tls"][0]
        assert ing["spec"]["ingressClassName"] == "traefik"
        assert ing["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "traefik"


def test_urls() -> None:
    assert manifests.urls("my-app-abcdefgh", "usw.sealos.app") == {
        "public_url": "https://my-app-abcdefgh-app.usw.sealos.app",
        "ttyd_url": "https://my-app-abcdefgh-ttyd.usw.sealos.app",
        "filebrowser_url": "https://my-app-abcdefgh-filebrowser.usw.sealos.app",
    }


def test_terminal_authorization() -> None:
    token = "Ab3+tokenZZ/9"
    # as projects.selectors.terminal_url appends it to the sandbox's ttyd URL
    url = "https://my-app-abcdefgh-ttyd.usw.sealos.app?authorization=" + manifests.terminal_authorization(
        token
    )
    parts = urlsplit(url)
    value = parse_qs(parts.query)["authorization"][0]  # '+' must survive form decoding
    assert base64.b64decode(value).decode() == f"user:{token}"
    assert unquote(parts.query.split("=", 1)[1]) == base64.b64encode(f"user:{token}".encode()).decode()


def test_database_url_encodes_user_and_password() -> None:
    url = manifests.database_url("us@r:x", "p@ss:w/rd?#% &", "pg-postgresql.ns.svc", 5432)
    assert url.startswith("postgresql://us%40r%3Ax:p%40ss%3Aw%2Frd%3F%23%25%20%26@pg-postgresql.ns.svc:5432/")
    parts = urlsplit(url)
    assert unquote(parts.username or "") == "us@r:x"
    assert unquote(parts.password or "") == "p@ss:w/rd?#% &"
    assert parts.hostname == "pg-postgresql.ns.svc" and parts.port == 5432
    assert parts.path == "/postgres"
    assert manifests.database_url("u", "p", "h", 5432, "app db").endswith("/app%20db")


def test_database_connection_from_account_secret() -> None:
    secret = {
        "data": {
            "username": base64.b64encode(b"postgres").decode(),
            "password": base64.b64encode(b"a/b").decode(),
        }
    }
    info = manifests.database_connection("pg1", "ns-x", secret)
    assert info is not None
    assert info["host"] == "pg1-postgresql.ns-x.svc"
    assert info["port"] == 5432
    assert info["url"] == "postgresql://postgres:a%2Fb@pg1-postgresql.ns-x.svc:5432/postgres"
    assert info["database"] == "postgres"
    app = manifests.database_connection("pg1", "ns-x", secret, "app db")
    assert app is not None and app["database"] == "app db"
    assert app["url"] == "postgresql://postgres:a%2Fb@pg1-postgresql.ns-x.svc:5432/app%20db"
    assert manifests.database_connection("pg1", "ns-x", {"data": {}}) is None
    empty_password = {"data": {**secret["data"], "password": ""}}
    assert manifests.database_connection("pg1", "ns-x", empty_password) is None
    with pytest.raises(UnicodeDecodeError):  # a credential is never guessed at
        manifests.database_connection("pg1", "ns-x", {"data": {**secret["data"], "password": "/w=="}})


def _sts_obj(generation: int, observed: int, wanted: int, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, **status},
    }


def test_statefulset_ready() -> None:
    full = {
        "replicas": 1,
        "readyReplicas": 1,
        "updatedReplicas": 1,
        "currentRevision": "r1",
        "updateRevision": "r1",
    }
    assert manifests.statefulset_ready(_sts_obj(2, 2, 1, **full))
    # the old pod still ready after a template change: the API server omits updatedReplicas when 0
    assert not manifests.statefulset_ready(_sts_obj(2, 2, 1, replicas=1, readyReplicas=1))
    assert not manifests.statefulset_ready(_sts_obj(3, 2, 1, **full))  # old generation's readiness
    assert not manifests.statefulset_ready(_sts_obj(2, 2, 1, **{**full, "updateRevision": "r2"}))
    assert not manifests.statefulset_ready(_sts_obj(2, 2, 1, replicas=1))
    assert manifests.statefulset_ready(_sts_obj(4, 4, 0, replicas=0))
    assert not manifests.statefulset_ready(_sts_obj(4, 4, 0, replicas=1, readyReplicas=1))
    assert not manifests.statefulset_ready({"metadata": {"generation": 1}, "spec": {"replicas": 1}})


# ---------------------------------------------------------------------------------------------
# Gateway (pure parts): kubeconfig parsing, error translation, client cache
# ---------------------------------------------------------------------------------------------

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: sealos
  cluster:
    server: https://usw.sealos.io:6443
contexts:
- name: ctx
  context:
    cluster: sealos
    user: alice
    namespace: ns-alice
current-context: ctx
users:
- name: alice
  user:
    token: abc.def.ghi
"""


def _kubeconfig(**edits: Any) -> str:
    data = yaml.safe_load(KUBECONFIG)
    for path, value in edits.items():
        target = data
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[0][key] if isinstance(target, list) else target[key]
        target = target[0] if isinstance(target, list) else target
        if value is None:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return yaml.safe_dump(data)


def test_parse_kubeconfig_good() -> None:
    info = kubeconfig.parse(KUBECONFIG)
    assert info == KubeconfigInfo(
        namespace="ns-alice",
        server="https://usw.sealos.io:6443",
        server_host="usw.sealos.io",
        context="ctx",
        user="alice",
    )
    assert kubeconfig.parse(KUBECONFIG.encode()).namespace == "ns-alice"
    plain_http = _kubeconfig(clusters__cluster__server="http://10.0.0.1:8080")
    assert kubeconfig.parse(plain_http).server_host == "10.0.0.1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: [oops\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a YAML mapping"),
        ("", "empty"),
        (_kubeconfig(**{"current-context": None}), "no current-context"),
        (_kubeconfig(**{"current-context": "elsewhere"}), "context 'elsewhere' is not defined"),
        (_kubeconfig(contexts__context__namespace=None), "current context 'ctx' has no namespace"),
        (_kubeconfig(contexts__context__namespace="Bad_NS"), "not a valid namespace"),
        (_kubeconfig(clusters__cluster__server=None), "cluster 'sealos' has no server"),
        (_kubeconfig(clusters__cluster__server="ftp://x"), "not an http(s) URL"),
        (_kubeconfig(contexts__context__cluster="nope"), "cluster 'nope' is not defined"),
        (_kubeconfig(contexts__context__user="bob"), "user 'bob' is not defined"),
        (_kubeconfig(users__user__exec={"command": "sh", "apiVersion": "v1"}), "'exec'"),
        (_kubeconfig(users__user__tokenFile="/var/run/secrets/token"), "'tokenFile'"),
        (_kubeconfig(clusters__cluster__certificate_authority=None), None),
        (KUBECONFIG + "# " + "x" * (256 * 1024) + "\n", "larger than 256 KiB"),
    ],
)
def test_parse_kubeconfig_bad(text: str, message: str | None) -> None:
    if message is None:  # a harmless edit: still valid
        kubeconfig.parse(text)
        Kube(text).close()
        return
    with pytest.raises(kubeconfig.KubeconfigError) as refused:
        kubeconfig.parse(text)
    assert message in str(refused.value)
    # the gateway refuses the same text with the same reason, as a KubeconfigInvalid (no HTTP status)
    with pytest.raises(KubeconfigInvalid) as caught:
        Kube(text)
    assert message in caught.value.message
    assert caught.value.status is None


def test_parse_kubeconfig_refuses_local_files() -> None:
    data = yaml.safe_load(KUBECONFIG)
    data["clusters"][0]["cluster"]["certificate-authority"] = "/etc/ssl/ca.pem"
    with pytest.raises(kubeconfig.KubeconfigError, match="certificate-authority"):
        kubeconfig.parse(yaml.safe_dump(data))
    with pytest.raises(KubeconfigInvalid, match="certificate-authority"):
        Kube(yaml.safe_dump(data))


class FakeResponse:
    """What ApiException(http_resp=...) reads from a urllib3 response."""

    def __init__(self, status: int, reason: str, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.reason = reason
        self.data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        self._headers = headers or {}

    def getheaders(self) -> dict[str, str]:
        return self._headers


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def api_error(
    status: int, reason: str, body: Any = None, headers: dict[str, str] | None = None
) -> ApiException:
    return ApiException(http_resp=FakeResponse(status, reason, body, headers))


def test_translate_not_found() -> None:
    err = translate(
        api_error(
            404, "Not Found", status_body(404, "NotFound", 'secrets "x" not found', name="x", kind="secrets")
        )
    )
    assert type(err) is KubeNotFound
    # the message is the gateway's own: never the text the remote end sent
    assert (err.status, err.reason, err.message) == (404, "NotFound", "not found")


@pytest.mark.parametrize(
    "body",
    [b"404 page not found", status_body(404, "NotFound", "the server could not find the requested resource")],
)
def test_translate_missing_kind_is_permanent(body: Any) -> None:
    err = translate(api_error(404, "Not Found", body))
    assert isinstance(err, KubePermanent)
    assert err.kind_missing and err.status == 404
    assert "installed" in err.message


def test_translate_conflicts() -> None:
    exists = translate(
        api_error(409, "Conflict", status_body(409, "AlreadyExists", 'secrets "x" already exists', name="x"))
    )
    assert isinstance(exists, KubeConflict) and exists.already_exists
    stale = translate(
        api_error(409, "Conflict", status_body(409, "Conflict", "the object has been modified", name="x"))
    )
    assert isinstance(stale, KubeConflict) and not stale.already_exists


def test_translate_throttling_and_server_errors() -> None:
    throttled = translate(
        api_error(
            429, "Too Many Requests", status_body(429, "TooManyRequests", "slow down"), {"Retry-After": "7"}
        )
    )
    assert isinstance(throttled, KubeTransient)
    assert throttled.retry_after == 7.0 and throttled.retryable
    lower = translate(api_error(429, "Too Many Requests", None, {"retry-after": "3"}))
    assert isinstance(lower, KubeTransient) and lower.retry_after == 3.0
    from_details = translate(
        api_error(
            500, "Internal Server Error", status_body(500, "InternalError", "etcd", retryAfterSeconds=2)
        )
    )
    assert isinstance(from_details, KubeTransient) and from_details.retry_after == 2.0
    for code in (500, 502, 503, 504):
        err = translate(ApiException(status=code, reason="Server Error"))
        assert isinstance(err, KubeTransient)
        assert err.retry_after is None and err.status == code and err.message


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("code", [400, 405, 406, 413, 415, 422])
def test_translate_permanent(code: int) -> None:
    message = 'StatefulSet.apps "x" is invalid: spec.replicas: Invalid value: -1: must be >= 0'
    err = translate(api_error(code, "Bad", status_body(code, "Invalid", message)))
    assert type(err) is KubePermanent
    assert err.message == f"the API server rejected the request ({code} Invalid)"
    assert err.status == code and not err.retryable


def test_translate_credentials() -> None:
    forbidden = (
        'statefulsets.apps is forbidden: User "x" cannot create resource "statefulsets" in API group "apps" '
        'in the namespace "ns-x"'
    )
    err = translate(api_error(403, "Forbidden", status_body(403, "Forbidden", forbidden)))
    assert isinstance(err, KubeCredentials)
    assert err.message == "forbidden: cannot create statefulsets in namespace ns-x" and err.status == 403
    unauthorized = translate(api_error(401, "Unauthorized", status_body(401, "Unauthorized", "Unauthorized")))
    assert isinstance(unauthorized, KubeCredentials) and unauthorized.status == 401


def test_translate_client_side_tls_errors() -> None:
    eof = translate(ApiException(status=0, reason="SSLError\n[SSL: UNEXPECTED_EOF_WHILE_READING] EOF"))
    assert isinstance(eof, KubeTransient)
    verify = translate(
        ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    assert isinstance(verify, KubeCredentials)


NO_POOL: Any = None  # urllib3 errors name the pool/connection they came from; none here


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.NewConnectionError(NO_POOL, "Failed to establish a new connection: [Errno 111]"),
        urllib3.exceptions.ReadTimeoutError(NO_POOL, "/api", "Read timed out. (read timeout=10)"),
        urllib3.exceptions.ConnectTimeoutError("connect timed out"),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3.exceptions.MaxRetryError(NO_POOL, "/api", reason=ConnectionRefusedError(111, "refused")),
        urllib3.exceptions.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_translate_transport_errors(exc: BaseException) -> None:
    err = translate(exc)
    assert isinstance(err, KubeTransient)
    assert err.status is None and err.message


def test_translate_certificate_failure() -> None:
    err = translate(ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"))
    assert isinstance(err, KubeCredentials)


def test_translate_errors_context_manager() -> None:
    original = api_error(503, "Service Unavailable", status_body(503, "ServiceUnavailable", "try later"))
    with pytest.raises(KubeTransient) as caught, translate_errors():
        raise original
    assert caught.value.__cause__ is original
    with pytest.raises(KubeNotFound), translate_errors():
        raise KubeNotFound("already ours")
    with pytest.raises(ZeroDivisionError), translate_errors():  # programming errors pass through
        raise ZeroDivisionError


def test_kube_client_from_text_without_network() -> None:
    client = Kube(KUBECONFIG, connect_timeout=1.5, read_timeout=4)
    try:
        assert client.namespace == "ns-alice"
        assert client.timeout() == (1.5, 4)
        assert client.api_client.configuration.host == "https://usw.sealos.io:6443"
        # urllib3 must not retry behind our back
        retries = client.api_client.rest_client.pool_manager.connection_pool_kw.get("retries")
        assert retries is False or getattr(retries, "total", None) is False
    finally:
        client.close()
    default = Kube(KUBECONFIG)
    assert all(t > 0 for t in default.timeout())
    default.close()


def test_kube_refuses_unusable_kubeconfig() -> None:
    with pytest.raises(KubeconfigInvalid):
        Kube("not: [valid")
    with pytest.raises(KubeconfigInvalid, match="exec"):
        Kube(_kubeconfig(users__user__exec={"command": "curl", "apiVersion": "v1"}))


def test_kube_rejects_a_manifest_for_another_namespace() -> None:
    client = Kube(KUBECONFIG)
    try:
        with pytest.raises(KubePermanent, match="namespace"):
            client.create(manifests.service(sandbox_spec(namespace="ns-other")))
        with pytest.raises(ValueError):
            client.get("Deployment", "x")
        with pytest.raises(ValueError):
            client.patch("StatefulSet", "x", {"spec": {}}, patch_type="json")
        with pytest.raises(ValueError):
            client.patch("Cluster", "x", {"spec": {}}, patch_type="strategic")
    finally:
        client.close()


def _close_every_cached_client() -> None:
    for _, client in cache._cache.values():
        client.close()
    cache._cache.clear()


@pytest.fixture
def empty_cache():
    _close_every_cached_client()
    yield
    _close_every_cached_client()


def test_client_cache(empty_cache: None) -> None:
    first = get_kube(1, KUBECONFIG)
    assert get_kube(1, KUBECONFIG) is first
    assert get_kube("1", KUBECONFIG) is first
    other = _kubeconfig(contexts__context__namespace="ns-two")
    second = get_kube(1, other)
    assert second is not first and first.closed and second.namespace == "ns-two"
    assert list(cache._cache) == ["1"]

    a, b = get_kube(1, KUBECONFIG, max_clients=2), get_kube(2, KUBECONFIG, max_clients=2)
    assert second.closed  # replaced by the first kubeconfig again
    get_kube(1, KUBECONFIG, max_clients=2)  # 1 is now the most recently used
    c = get_kube(3, KUBECONFIG, max_clients=2)
    assert b.closed and not a.closed and not c.closed
    assert list(cache._cache) == ["1", "3"]
    with pytest.raises(KubeconfigInvalid):
        get_kube(4, "nope: [", max_clients=2)
    assert list(cache._cache) == ["1", "3"]


def test_the_reconcilers_build_clients_with_the_settings(empty_cache: None, settings: Any) -> None:
    from reconcile.runner import client_for
    from userconfig.models import ConfigKey, UserConfig

    settings.KUBE_CONNECT_TIMEOUT, settings.KUBE_READ_TIMEOUT = 1.5, 4
    settings.KUBE_CLIENT_CACHE_SIZE = 1
    config = UserConfig(user_id=1, key=ConfigKey.KUBECONFIG, value=KUBECONFIG)  # never saved
    first = client_for(config)
    assert first.timeout() == (1.5, 4.0)
    assert client_for(config) is first
    settings.KUBE_READ_TIMEOUT = 8
    second = client_for(config)  # new timeouts: a new client
    assert first.closed and second.timeout() == (1.5, 8.0)
    client_for(UserConfig(user_id=2, key=ConfigKey.KUBECONFIG, value=KUBECONFIG))
    assert second.closed and list(cache._cache) == ["2"]  # KUBE_CLIENT_CACHE_SIZE


def test_cache_resets_after_fork(empty_cache: None) -> None:
    client = get_kube(1, KUBECONFIG)
    cache._reset_after_fork()
    assert list(cache._cache) == []
    assert not client.closed  # the parent's connections are left alone
    client.close()
