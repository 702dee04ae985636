"""kubectl apply/get/patch/delete --validate=false against kubesim (skipped without kubectl)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.kubesim.helpers import cluster_v1, sts_body, wait_for

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH; kubectl conformance skipped")


@pytest.fixture
def kubectl(kubesim, kube_namespace, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubesim.kubeconfig(kube_namespace))
    env = dict(os.environ, KUBECONFIG=str(kc))

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {p.stdout}\n{p.stderr}")
        return p

    return run


def test_kubectl_configmap_roundtrip(kubectl):
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kc"}, "data": {"x": "1"}}
    assert "created" in kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(doc)).stdout
    doc["data"] = {"x": "2", "y": "3"}
    assert "configured" in kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(doc)).stdout
    got = json.loads(kubectl("get", "configmap", "kc", "-o", "json").stdout)
    assert got["data"] == {"x": "2", "y": "3"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    kubectl("patch", "configmap", "kc", "--type=merge", "-p", '{"data":{"z":"4"}}')
    kubectl("patch", "configmap", "kc", "--type=json", "-p", '[{"op":"remove","path":"/data/x"}]')
    got = json.loads(kubectl("get", "cm", "kc", "-o", "json").stdout)
    assert got["data"] == {"y": "3", "z": "4"}
    assert "kc" in kubectl("get", "configmaps").stdout
    assert "deleted" in kubectl("delete", "configmap", "kc").stdout
    assert kubectl("get", "cm", "kc", check=False).returncode != 0


def test_kubectl_statefulset_apply_strategic(kubectl, kubesim, kube_namespace):
    body = sts_body("web")
    kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))
    body["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    body["spec"]["template"]["spec"]["containers"].append({"name": "fb", "image": "filebrowser:2"})
    kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))
    got = json.loads(kubectl("get", "sts", "web", "-o", "json").stdout)
    cs = got["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["main", "fb"] and [e["name"] for e in cs[0]["env"]] == ["A", "B"]
    assert got["metadata"]["generation"] == 2
    kubectl("patch", "statefulset", "web", "-p", '{"spec":{"replicas":0}}')
    assert json.loads(kubectl("get", "sts", "web", "-o", "json").stdout)["spec"]["replicas"] == 0
    kubectl("delete", "statefulset", "web")


def test_kubectl_custom_resource(kubectl, kube_namespace):
    kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(cluster_v1("pg")))
    wait_for(
        lambda: (
            json.loads(kubectl("get", "clusters.apps.kubeblocks.io", "pg", "-o", "json").stdout)
            .get("status", {})
            .get("phase")
            == "Running"
        )
    )
    kubectl(
        "patch",
        "clusters.apps.kubeblocks.io",
        "pg",
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"a":"b"}}}',
    )
    out = kubectl("get", "clusters.apps.kubeblocks.io", "-o", "name").stdout
    assert "pg" in out
    kubectl("delete", "clusters.apps.kubeblocks.io", "pg", "--wait=false")
