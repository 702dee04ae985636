"""Rule 1 of the design: requests never wait on (or even reach) Kubernetes.

This module runs before tests/reconcile/ starts the session's Celery worker, so nothing but the
requests themselves could reach kubesim while it runs.
"""

import pytest

from tests.conftest import WORKER

pytestmark = pytest.mark.django_db(transaction=True)


def create_project(api, name="Web Shop"):
    response = api.post("/api/v1/projects", {"name": name}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def test_no_api_request_touches_the_cluster(cluster_api, kubesim, kube_namespace):
    """Every API path records intent only: kubesim sees no request while they run (no worker here)."""
    if WORKER["started"]:
        pytest.skip("run this module before the tests that start the Celery worker (default order does)")
    kubesim.reset_stats()
    body = create_project(cluster_api)
    pid = body["id"]
    sid = body["sandboxes"][0]["id"]
    calls = [
        ("get", "/api/v1/projects"),
        ("get", f"/api/v1/projects/{pid}"),
        ("put", f"/api/v1/projects/{pid}/env", {"variables": [{"key": "A", "value": "1"}]}),
        ("get", f"/api/v1/projects/{pid}/env"),
        ("delete", f"/api/v1/projects/{pid}/env/A"),
        ("post", f"/api/v1/projects/{pid}/databases"),
        ("get", f"/api/v1/projects/{pid}/events"),
        ("get", f"/api/v1/projects/{pid}/tasks"),
        ("get", f"/api/v1/sandboxes/{sid}"),
        ("get", f"/api/v1/sandboxes/{sid}/terminal"),
        ("post", f"/api/v1/projects/{pid}/stop"),
        ("post", f"/api/v1/projects/{pid}/start"),
        ("get", "/api/v1/me/kubeconfig"),
        ("put", "/api/v1/me/kubeconfig", {"kubeconfig": kubesim.kubeconfig(kube_namespace)}),
        ("get", "/api/v1/me/agent"),
        ("put", "/api/v1/me/agent", {"model": "m"}),
        ("delete", f"/api/v1/projects/{pid}"),
    ]
    for method, path, *data in calls:
        response = getattr(cluster_api, method)(path, *(data or [None]), format="json")
        assert response.status_code < 500, (path, response.status_code)
    assert kubesim.stats()["total"] == 0
