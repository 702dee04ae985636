"""Watch semantics: initial ADDED state, resume from resourceVersion, 410 Expired, timeoutSeconds."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import watch
from kubernetes.client import ApiException

from kubesim.cli import KubeSim
from tests.kubesim.helpers import clients_from_kubeconfig


def cm(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"a": "b"}}


@pytest.fixture
def k(kubesim, kube_namespace):
    return clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))


def test_watch_initial_state_then_changes(k, kube_namespace):
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    k.core.create_namespaced_config_map(kube_namespace, cm("b"))
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def mutate() -> None:
        time.sleep(0.2)
        k.core.patch_namespaced_config_map("a", kube_namespace, {"data": {"a": "c"}})
        k.core.delete_namespaced_config_map("b", kube_namespace)

    t = threading.Thread(target=mutate)
    t.start()
    for ev in w.stream(k.core.list_namespaced_config_map, kube_namespace, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 4:
            w.stop()
    t.join()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_resume_from_resource_version(k, kube_namespace):
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    rv = k.core.list_namespaced_config_map(kube_namespace).metadata.resource_version
    k.core.create_namespaced_config_map(kube_namespace, cm("b"))
    k.core.create_namespaced_config_map(kube_namespace, cm("c", {"keep": "1"}))
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            k.core.list_namespaced_config_map, kube_namespace, resource_version=rv, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "b"), ("ADDED", "c")]
    # label selector filters watch events too
    events = [
        e["object"].metadata.name
        for e in watch.Watch().stream(
            k.core.list_namespaced_config_map,
            kube_namespace,
            resource_version=rv,
            label_selector="keep=1",
            timeout_seconds=1,
        )
    ]
    assert events == ["c"]


def test_watch_timeout_seconds(k, kube_namespace):
    t0 = time.monotonic()
    events = list(watch.Watch().stream(k.core.list_namespaced_config_map, kube_namespace, timeout_seconds=1))
    elapsed = time.monotonic() - t0
    assert events == [] and 0.9 <= elapsed < 3


def test_watch_custom_resources(k, kube_namespace):
    from tests.kubesim.helpers import cluster_v1

    k.custom.create_namespaced_custom_object(
        "apps.kubeblocks.io", "v1", kube_namespace, "clusters", cluster_v1("pg")
    )
    w = watch.Watch()
    phases = []
    for ev in w.stream(
        k.custom.list_namespaced_custom_object,
        "apps.kubeblocks.io",
        "v1",
        kube_namespace,
        "clusters",
        timeout_seconds=5,
    ):
        phases.append((ev["object"].get("status") or {}).get("phase"))
        if phases[-1] == "Running":
            w.stop()
    assert phases[-1] == "Running"


def test_watch_too_old_resource_version_is_410():
    with KubeSim(port=0, watch_window=5, load_crds=False, namespace="w") as sim:
        k = clients_from_kubeconfig(sim.kubeconfig("w"))
        rv = k.core.list_namespaced_config_map("w").metadata.resource_version
        for i in range(10):
            k.core.create_namespaced_config_map("w", cm(f"c{i}"))
        with pytest.raises(ApiException) as ei:
            list(
                watch.Watch().stream(
                    k.core.list_namespaced_config_map, "w", resource_version=rv, timeout_seconds=1
                )
            )
        assert ei.value.status == 410
        import json

        body = json.loads(ei.value.body)
        assert body["code"] == 410 and "too old resource version" in body["message"]
        # a recent resourceVersion still works
        rv2 = k.core.list_namespaced_config_map("w").metadata.resource_version
        assert (
            list(
                watch.Watch().stream(
                    k.core.list_namespaced_config_map, "w", resource_version=rv2, timeout_seconds=1
                )
            )
            == []
        )
