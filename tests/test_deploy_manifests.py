"""The Kustomize manifests in deploy/ (DESIGN §12, Deploy): both overlays render with `kubectl kustomize`,
pass strict schema validation for Kubernetes 1.28 and 1.33, hold the pod-security and availability rules
an operator relies on, and the all-in-one output applies to kubesim with `kubectl apply`."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = shutil.which("kubectl")
OVERLAYS = ("production", "all-in-one")
K8S_VERSIONS = ("1.28", "1.33")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH; Kustomize tests skipped")


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [KUBECTL or "kubectl", "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render_and_pass_strict_schema_validation(overlay, version):
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceAccount",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    } <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field():
    web = dict(of_kind(render("production"), "Deployment")["tenter-web"])
    web["spec"] = {**web["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, "1.33", strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_bounded_and_without_a_token(overlay):
    docs = render(overlay)
    specs = pod_specs(docs)
    assert {"tenter-web", "tenter-worker", "tenter-beat", "tenter-migrate"} <= set(specs)
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (name, c)
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c)
            assert c["resources"]["requests"] and c["resources"]["limits"], (name, c)
        if name.startswith("tenter-") and name not in ("tenter-postgres", "tenter-redis"):
            assert spec["serviceAccountName"] == "tenter"
            mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, name  # the only writable path: an emptyDir
    (account,) = of_kind(docs, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    assert not kinds_present(docs, {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


def kinds_present(docs: tuple[dict[str, Any], ...], kinds: set[str]) -> set[str]:
    return {d["kind"] for d in docs} & kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_carried_only_references(overlay):
    docs = render(overlay)
    assert not of_kind(docs, "Secret")
    (config,) = of_kind(docs, "ConfigMap").values()
    for key in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "METRICS_TOKEN", "POSTGRES_PASSWORD"):
        assert key not in config["data"]
    for spec in pod_specs(docs).values():
        for c in spec.get("initContainers", []) + spec["containers"]:
            for var in c.get("env", []):
                assert "value" not in var or not re.search(r"(?i)password|secret|token|key", var["name"])


def test_web_is_probed_drains_and_scales_and_workers_scale():
    docs = render("production")
    web = of_kind(docs, "Deployment")["tenter-web"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # the probe's Host header must be an allowed host, or Django answers 400
    (config,) = of_kind(docs, "ConfigMap").values()
    host = container["readinessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    assert host in config["data"]["ALLOWED_HOSTS"].split(",")
    assert container["lifecycle"]["preStop"]
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30  # gunicorn graceful 25 s
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    assert hpas == {"tenter-web", "tenter-worker"}
    pdbs = {
        tuple(sorted(p["spec"]["selector"]["matchLabels"].items()))
        for p in of_kind(docs, "PodDisruptionBudget").values()
    }
    assert len(pdbs) == 3
    for name in ("tenter-web", "tenter-worker"):
        init = of_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]["initContainers"][0]
        assert "migrate --check" in " ".join(init["command"])
    job = of_kind(docs, "Job")["tenter-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][2] == "migrate_locked"
    assert of_kind(docs, "Deployment")["tenter-beat"]["spec"]["replicas"] == 2


def test_production_uses_external_services_and_all_in_one_runs_its_own():
    prod, aio = render("production"), render("all-in-one")
    assert not of_kind(prod, "StatefulSet")
    assert set(of_kind(aio, "StatefulSet")) == {"tenter-postgres", "tenter-redis"}
    (aio_config,) = of_kind(aio, "ConfigMap").values()
    assert aio_config["data"]["REDIS_URL"] == "redis://tenter-redis:6379/0"
    (prod_config,) = of_kind(prod, "ConfigMap").values()
    assert "REDIS_URL" not in prod_config["data"]  # from the Secret


@pytest.fixture
def kubectl(kubesim, kube_namespace, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubesim.kubeconfig(kube_namespace))
    env = dict(os.environ, KUBECONFIG=str(kc))

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL or "kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )

    return run


def _in_namespace(docs: tuple[dict[str, Any], ...], namespace: str) -> str:
    moved = []
    for doc in docs:
        doc = yaml.safe_load(yaml.safe_dump(doc))
        doc["metadata"]["namespace"] = namespace
        moved.append(doc)
    return yaml.safe_dump_all(moved, sort_keys=False)


def test_all_in_one_applies_to_kubesim(kubectl, kube_namespace):
    text = _in_namespace(render("all-in-one"), kube_namespace)
    applied = kubectl("apply", "--validate=false", "-f", "-", stdin=text)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "deployment.apps/tenter-web created" in applied.stdout
    assert "horizontalpodautoscaler.autoscaling/tenter-worker created" in applied.stdout
    assert "job.batch/tenter-migrate created" in applied.stdout
    # applying the same output again changes nothing and fails nothing
    again = kubectl("apply", "--validate=false", "-f", "-", stdin=text)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "created" not in again.stdout
    got = kubectl("get", "deployments,statefulsets,pdb,hpa,networkpolicies", "-o", "name")
    assert got.returncode == 0, got.stderr
    for name in (
        "deployment.apps/tenter-beat",
        "statefulset.apps/tenter-postgres",
        "poddisruptionbudget.policy/tenter-web",
        "networkpolicy.networking.k8s.io/tenter-redis",
    ):
        assert name in got.stdout


def test_kubesim_refuses_a_deployment_whose_selector_misses_its_pods(kubectl, kube_namespace):
    web = yaml.safe_load(yaml.safe_dump(of_kind(render("production"), "Deployment")["tenter-web"]))
    web["metadata"]["namespace"] = kube_namespace
    web["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "other"
    refused = kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(web))
    assert refused.returncode != 0
    assert "selector" in refused.stderr


def test_check_deploy_is_clean_with_the_production_overlay_settings():
    (config,) = of_kind(render("production"), "ConfigMap").values()
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "METRICS_", "API_SCHEMA_"))}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(config["data"])
    env.update(  # what the operator's Secret holds
        SECRET_KEY="k" * 20 + Fernet.generate_key().decode(),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        METRICS_TOKEN="t" * 32,
        DJANGO_SETTINGS_MODULE="config.settings",
        PROMETHEUS_MULTIPROC_DIR=str(ROOT / ".state" / "prometheus-check"),
    )
    assert env["DEBUG"] == "false"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_image_builds_static_files_and_runs_as_the_pods_non_root_user():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    runs = [line for line in lines if line.startswith("RUN ")]
    assert any("manage.py collectstatic" in line for line in runs)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so the kubelet can verify runAsNonRoot
    pods = pod_specs(render("production"))
    assert {spec["securityContext"]["runAsUser"] for spec in pods.values()} == {int(uid)}
    assert lines.index(next(line for line in lines if line.startswith("USER "))) > lines.index(
        next(line for line in runs if "collectstatic" in line)
    )
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert "python:config.gunicorn" in cmd  # graceful timeout, metrics of dead processes
