"""Fault injection, request statistics, per-token permissions and SelfSubjectAccessReview."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import urllib3
from kubernetes.client import ApiException

from tests.kubesim.helpers import clients_from_kubeconfig, sts_body


def cm(name: str) -> dict:
    return {"metadata": {"name": name}, "data": {"a": "b"}}


@pytest.fixture
def k(kubesim, kube_namespace):
    return clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))


@pytest.fixture
def faults(kubesim):
    yield kubesim
    kubesim.clear_faults()


def test_admin_endpoints_need_admin_token(kubesim):
    code, body = kubesim.request("GET", "/_kubesim/stats", token="wrong")
    assert code == 401 and body["reason"] == "Unauthorized"


def test_fault_500_filtered_by_verb_and_resource(k, kube_namespace, faults):
    faults.faults(status=500, verbs=["create"], resources=["configmaps"])
    with pytest.raises(ApiException) as ei:
        k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    assert ei.value.status == 500 and json.loads(ei.value.body)["reason"] == "InternalError"
    # other verbs/resources unaffected
    k.core.list_namespaced_config_map(kube_namespace)
    k.core.create_namespaced_secret(kube_namespace, {"metadata": {"name": "s"}})
    faults.clear_faults()
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))


def test_fault_rate(k, kube_namespace, faults):
    faults.faults(status=503, rate=0.3, verbs=["create"], resources=["configmaps"], retry_after=0)
    failures = 0
    for i in range(60):
        try:
            k.core.create_namespaced_config_map(kube_namespace, cm(f"c{i}"))
        except ApiException as e:
            assert e.status == 503
            failures += 1
    assert 3 <= failures <= 40


def test_fault_latency(k, kube_namespace, faults):
    faults.faults(latency_ms=200, verbs=["get"], resources=["configmaps"])
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    t0 = time.monotonic()
    k.core.read_namespaced_config_map("a", kube_namespace)
    assert time.monotonic() - t0 >= 0.2


def test_fault_429_retry_after(k, kube_namespace, faults):
    faults.faults(status=429, retry_after=7, verbs=["create"])
    with pytest.raises(ApiException) as ei:
        k.apps.create_namespaced_stateful_set(kube_namespace, sts_body("s"))
    assert ei.value.status == 429
    assert ei.value.headers["Retry-After"] == "7"
    assert json.loads(ei.value.body)["reason"] == "TooManyRequests"


def test_fault_drop_connection(k, kube_namespace, faults):
    faults.faults(drop=True, verbs=["create"], resources=["configmaps"])
    with pytest.raises(urllib3.exceptions.HTTPError):
        k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    faults.clear_faults()
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))  # client recovers


def test_fault_count_limits_injections(k, kube_namespace, faults):
    faults.faults(status=500, count=1, verbs=["create"], resources=["configmaps"])
    with pytest.raises(ApiException):
        k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))


def test_stats(kubesim, k, kube_namespace):
    kubesim.reset_stats()
    k.core.create_namespaced_config_map(kube_namespace, cm("a"))
    k.core.read_namespaced_config_map("a", kube_namespace)
    k.core.read_namespaced_config_map("a", kube_namespace)
    k.core.patch_namespaced_config_map("a", kube_namespace, {"data": {"x": "y"}})
    k.core.list_namespaced_config_map(kube_namespace)
    st = kubesim.stats()
    assert st["total"] >= 5
    assert st["by_verb"]["get"] >= 2 and st["by_resource"]["configmaps"] >= 5
    assert st["by_verb_resource"]["create configmaps"] == 1
    assert st["by_object"][f"create configmaps {kube_namespace}/a"] == 1
    assert st["by_object"][f"get configmaps {kube_namespace}/a"] == 2
    assert st["by_object"][f"patch configmaps {kube_namespace}/a"] == 1
    kubesim.reset_stats()
    assert kubesim.stats()["total"] == 0


def test_stats_tell_a_create_that_succeeded_from_one_refused_as_already_existing(kubesim, k, kube_namespace):
    """A step re-run after its worker was killed sends its creates again: they are requests, not objects."""
    kubesim.reset_stats()
    k.core.create_namespaced_config_map(kube_namespace, cm("b"))
    with pytest.raises(ApiException) as exc:
        k.core.create_namespaced_config_map(kube_namespace, cm("b"))
    assert exc.value.status == 409
    st = kubesim.stats()
    assert st["by_object"][f"create configmaps {kube_namespace}/b"] == 2
    assert st["created_by_object"] == {f"create configmaps {kube_namespace}/b": 1}


def test_token_permissions_and_ssar(kubesim, kube_namespace):
    from kubernetes.client import (
        V1ResourceAttributes,
        V1SelfSubjectAccessReview,
        V1SelfSubjectAccessReviewSpec,
    )

    token = secrets.token_hex(12)
    kubesim.add_token(token, deny=[{"verb": "create", "resource": "statefulsets"}])
    limited = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace, token=token))
    with pytest.raises(ApiException) as ei:
        limited.apps.create_namespaced_stateful_set(kube_namespace, sts_body("s"))
    assert ei.value.status == 403
    body = json.loads(ei.value.body)
    user = f"user-{token[:6]}"
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        f'statefulsets.apps is forbidden: User "{user}" cannot create resource '
        f'"statefulsets" in API group "apps" in the namespace "{kube_namespace}"'
    )
    limited.core.create_namespaced_config_map(kube_namespace, cm("ok"))  # other permissions intact

    def review(k, verb, resource, group):
        r = k.authz.create_self_subject_access_review(
            V1SelfSubjectAccessReview(
                spec=V1SelfSubjectAccessReviewSpec(
                    resource_attributes=V1ResourceAttributes(
                        namespace=kube_namespace, verb=verb, resource=resource, group=group
                    )
                )
            )
        )
        return r.status.allowed

    assert review(limited, "create", "statefulsets", "apps") is False
    assert review(limited, "list", "statefulsets", "apps") is True
    assert review(limited, "create", "secrets", "") is True
    admin = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace))
    assert review(admin, "create", "statefulsets", "apps") is True
    # named user, namespace-scoped deny
    kubesim.add_token(
        "tok-" + token, user="alice", deny=[{"verb": "*", "resource": "secrets", "namespace": kube_namespace}]
    )
    alice = clients_from_kubeconfig(kubesim.kubeconfig(kube_namespace, token="tok-" + token))
    with pytest.raises(ApiException) as ei:
        alice.core.list_namespaced_secret(kube_namespace)
    assert (
        'User "alice" cannot list resource "secrets" in API group ""' in json.loads(ei.value.body)["message"]
    )
