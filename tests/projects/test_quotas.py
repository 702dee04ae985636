"""Per-user quotas: checked in the transaction that records the intent, so parallel requests (threads,
each with its own database connection, against real PostgreSQL) can never pass a limit."""

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core.audit import SYSTEM
from projects import services
from projects.models import Project, Quota
from sandboxes.models import ResourceStatus, Sandbox
from tests.factories import KubeconfigFactory, ProjectFactory, SandboxFactory, UserFactory

PARALLEL = 20


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def in_parallel(call: Callable[[int], Any], n: int = PARALLEL) -> list[Any]:
    """Run call(0..n-1) in n threads released together; each thread has its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            response = call(i)
            results[i] = (response.status_code, response.json())
        except Exception as exc:  # reported by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def assert_split(results: list[Any], ok: int, quota: str) -> list[dict[str, Any]]:
    assert not [r for r in results if isinstance(r, Exception)], results
    statuses = Counter(status for status, _ in results)
    assert statuses == {202: ok, 409: PARALLEL - ok}, statuses
    refusals = [body for status, body in results if status == 409]
    for body in refusals:
        assert set(body) == {"code", "message", "details"}
        assert body["code"] == "quota_exceeded"
        assert body["details"]["quota"] == quota
    return refusals


def stopped_projects(user, n: int, **sandbox: Any) -> list[Project]:
    projects = []
    for _ in range(n):
        project = ProjectFactory(owner=user, status="STOPPED")
        SandboxFactory(project=project, status="STOPPED", **sandbox)
        projects.append(project)
    return projects


@pytest.mark.django_db(transaction=True)
def test_parallel_creates_never_pass_the_project_limit():
    user = UserFactory()
    KubeconfigFactory(user=user)
    Quota.objects.create(user=user, max_projects=5)
    client = client_for(user)

    results = in_parallel(lambda i: client.post("/api/v1/projects", {"name": f"App {i}"}, format="json"))

    refusals = assert_split(results, 5, "projects")
    assert {r["details"]["limit"] for r in refusals} == {5}
    assert {r["details"]["in_use"] for r in refusals} == {5}
    assert {r["details"]["asked"] for r in refusals} == {1}
    assert Project.objects.filter(owner=user).count() == 5
    assert Sandbox.objects.filter(project__owner=user).count() == 5


@pytest.mark.django_db(transaction=True)
def test_parallel_starts_never_pass_the_running_sandboxes_limit():
    user = UserFactory()
    KubeconfigFactory(user=user)
    Quota.objects.create(user=user, max_running_sandboxes=5, max_projects=100)
    projects = stopped_projects(user, PARALLEL)
    client = client_for(user)

    results = in_parallel(lambda i: client.post(f"/api/v1/projects/{projects[i].pk}/start"))

    refusals = assert_split(results, 5, "running_sandboxes")
    assert all(r["details"]["limit"] == 5 and r["details"]["in_use"] == 5 for r in refusals)
    running = Sandbox.objects.filter(project__owner=user, status=ResourceStatus.STARTING).count()
    assert running == 5
    assert Sandbox.objects.filter(project__owner=user, status=ResourceStatus.STOPPED).count() == 15


@pytest.mark.django_db(transaction=True)
def test_parallel_resizes_never_pass_the_cpu_limit():
    user = UserFactory()
    KubeconfigFactory(user=user)
    # 20 small sandboxes request 20 x 20m; each resize to large (2 CPU) asks 1980m more: room for five.
    Quota.objects.create(user=user, max_cpu=f"{20 * 20 + 5 * 1980}m", max_memory="1Ti", max_projects=100)
    projects = stopped_projects(user, PARALLEL, size="small")
    sandboxes = [p.sandboxes.get() for p in projects]
    client = client_for(user)

    results = in_parallel(
        lambda i: client.post(f"/api/v1/sandboxes/{sandboxes[i].pk}/resize", {"size": "large"}, format="json")
    )

    refusals = assert_split(results, 5, "cpu")
    for body in refusals:
        assert body["details"] == {
            "quota": "cpu",
            "limit": 10300,
            "in_use": 10300,
            "asked": 1980,
            "unit": "millicores",
        }
    large = Sandbox.objects.filter(project__owner=user, size="large")
    assert large.count() == 5
    assert {(s.cpu_request, s.generation) for s in large} == {("2", 2)}
    assert Sandbox.objects.filter(project__owner=user, size="small", generation=1).count() == 15


# --- single requests: the details and every checked intent ------------------------------------------


@pytest.mark.django_db
def test_cpu_and_memory_details_and_the_limit_is_inclusive(api, user, kubeconfig, settings):
    settings.QUOTA_MAX_CPU = "1"
    settings.QUOTA_MAX_MEMORY = "64Gi"
    for name in ("A", "B"):  # 2 x 500m = exactly the limit
        assert (
            api.post("/api/v1/projects", {"name": name, "size": "medium"}, format="json").status_code == 202
        )
    response = api.post("/api/v1/projects", {"name": "C", "size": "medium"}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "quota_exceeded"
    assert body["details"] == {
        "quota": "cpu",
        "limit": 1000,
        "in_use": 1000,
        "asked": 500,
        "unit": "millicores",
    }
    assert "CPU" in body["message"]
    # the small size still fits nothing either: 20m more
    assert api.post("/api/v1/projects", {"name": "D"}, format="json").json()["details"]["asked"] == 20
    settings.QUOTA_MAX_CPU = "32"
    settings.QUOTA_MAX_MEMORY = "2Gi"  # two medium sandboxes have 2Gi
    response = api.post("/api/v1/projects", {"name": "E"}, format="json")
    assert response.status_code == 409
    assert response.json()["details"] == {
        "quota": "memory",
        "limit": 2 * 2**30,
        "in_use": 2 * 2**30,
        "asked": 25 * 2**20,
        "unit": "bytes",
    }
    assert Project.objects.filter(owner=user).count() == 2


@pytest.mark.django_db
def test_database_add_is_quota_checked(api, user, kubeconfig):
    project = services.project_create(owner=user, name="Shop", actor=SYSTEM)
    quota = Quota.objects.create(user=user, max_databases=0)
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.status_code == 409
    assert response.json()["details"] == {
        "quota": "databases",
        "limit": 0,
        "in_use": 0,
        "asked": 1,
        "unit": "count",
    }
    quota.max_databases = None  # back to the default
    quota.max_cpu = "100m"  # the sandbox has 20m, a database asks 100m
    quota.save()
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.json()["details"]["quota"] == "cpu"
    quota.max_cpu = "120m"
    quota.save()
    assert api.post(f"/api/v1/projects/{project.pk}/databases", format="json").status_code == 202


@pytest.mark.django_db
def test_start_and_retry_count_only_sandboxes_that_would_run(api, user, kubeconfig):
    Quota.objects.create(user=user, max_running_sandboxes=1)
    running = ProjectFactory(owner=user, status="RUNNING")
    SandboxFactory(project=running, status="RUNNING")
    stopped = stopped_projects(user, 1)[0]
    failed = ProjectFactory(owner=user, status="ERROR")
    SandboxFactory(project=failed, status="ERROR", failed_status="STARTING")
    for path in (f"{stopped.pk}/start", f"{failed.pk}/retry"):
        response = api.post(f"/api/v1/projects/{path}")
        assert response.status_code == 409, path
        assert response.json()["details"]["in_use"] == 1
    Sandbox.objects.filter(project=running).update(status="STOPPED")
    assert api.post(f"/api/v1/projects/{stopped.pk}/start").status_code == 202


@pytest.mark.django_db
def test_me_quota_shows_usage_limits_and_sizes(api, user, kubeconfig):
    Quota.objects.create(user=user, max_projects=3, max_memory="1Gi")
    services.project_create(owner=user, name="Shop", size="medium", actor=SYSTEM)
    response = api.get("/api/v1/me/quota")
    assert response.status_code == 200
    body = response.json()
    assert body["projects"] == {
        "limit": 3,
        "in_use": 1,
        "unit": "count",
        "limit_display": "3",
        "in_use_display": "1",
    }
    assert body["running_sandboxes"]["in_use"] == 1 and body["running_sandboxes"]["limit"] == 10
    assert body["databases"] == {**body["databases"], "limit": 10, "in_use": 0}
    assert body["cpu"] == {**body["cpu"], "limit": 32000, "in_use": 500, "limit_display": "32"}
    assert body["memory"] == {**body["memory"], "limit": 2**30, "in_use": 2**30, "limit_display": "1Gi"}
    assert [s["name"] for s in body["sizes"]] == ["small", "medium", "large"]
    assert body["sizes"][0]["cpu_request"] == "20m"


@pytest.mark.django_db
def test_another_users_rows_do_not_count(api, user, kubeconfig, other_user):
    KubeconfigFactory(user=other_user)
    Quota.objects.create(user=user, max_projects=1)
    services.project_create(owner=other_user, name="Theirs", actor=SYSTEM)
    assert api.post("/api/v1/projects", {"name": "Mine"}, format="json").status_code == 202
    assert api.get("/api/v1/me/quota").json()["projects"]["in_use"] == 1


@pytest.mark.django_db
def test_quota_fields_take_kubernetes_quantities():
    from django.core.exceptions import ValidationError

    quota = Quota(user=UserFactory(), max_cpu="lots", max_memory="4Gi")
    quota.user.save()
    with pytest.raises(ValidationError) as info:
        quota.full_clean()
    assert "max_cpu" in info.value.message_dict and "max_memory" not in info.value.message_dict
