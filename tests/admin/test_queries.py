"""Changelists and the overview stay at a constant number of queries with 1,000+ rows."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import AuditEntry
from projects.models import Project, ProjectTask
from sandboxes.models import Database, ResourceEvent, Sandbox
from userconfig.models import ConfigKey, User, UserConfig

pytestmark = pytest.mark.django_db

ROWS = 1100
STATUSES = ["CREATING", "STARTING", "RUNNING", "STOPPED", "ERROR", "TERMINATING"]
RESOURCES = {
    "cpu_request": "1",
    "cpu_limit": "1",
    "memory_request": "1Mi",
    "memory_limit": "1Mi",
    "storage_size": "1",
}


@pytest.fixture
def many(db):
    owners = User.objects.bulk_create(User(username=f"owner{i}", password="!") for i in range(60))
    UserConfig.objects.bulk_create(
        UserConfig(
            user=o,
            key=ConfigKey.KUBECONFIG,
            value="kubeconfig",
            namespace=f"ns-{i}",
            check_status=["OK", "FAILED", "UNREACHABLE", "PENDING"][i % 4],
        )
        for i, o in enumerate(owners)
    )
    projects = Project.objects.bulk_create(
        Project(owner=owners[i % len(owners)], name=f"P{i}", status=STATUSES[i % 6]) for i in range(ROWS)
    )
    old = timezone.now() - timedelta(hours=2)
    sandboxes = Sandbox.objects.bulk_create(
        Sandbox(
            project=p,
            name=f"sb-{i}",
            k8s_namespace="ns",
            k8s_name=f"sb-{i}",
            status=STATUSES[i % 6],
            image="img",
            locked_until=timezone.now() + timedelta(seconds=30) if i % 7 == 0 else None,
            lease_token=uuid.uuid4() if i % 7 == 0 else None,
            last_error="boom" if i % 6 == 4 else "",
            **RESOURCES,
        )
        for i, p in enumerate(projects)
    )
    Sandbox.objects.filter(status__in=["CREATING", "ERROR"]).update(status_changed_at=old)
    Database.objects.bulk_create(
        Database(
            project=p,
            name=f"db-{i}",
            k8s_namespace="ns",
            k8s_name=f"db-{i}",
            status=STATUSES[(i + 1) % 6],
            api_version="v1",
            password=f"pw-{i}",
            last_error="db boom" if (i + 1) % 6 == 4 else "",
            **RESOURCES,
        )
        for i, p in enumerate(projects)
    )
    ProjectTask.objects.bulk_create(
        ProjectTask(project=p, sandbox=s, type="CLONE_REPOSITORY", payload={"n": i})
        for i, (p, s) in enumerate(zip(projects, sandboxes, strict=True))
    )
    ResourceEvent.objects.bulk_create(
        ResourceEvent(
            project=s.project,
            resource_kind="sandbox",
            resource_id=s.pk,
            to_status=s.status,
            actor="reconciler",
        )
        for s in sandboxes
    )
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=owners[i % len(owners)], action="project.create", target_type="project", target_id=str(i)
        )
        for i in range(ROWS)
    )
    return {"owners": owners, "projects": projects, "sandboxes": sandboxes}


# A page costs: session, user, (permissions), count, rows, (date hierarchy) — measured 4 to 8; never per row.
BOUND = 10
CHANGELISTS = [
    "admin:sandboxes_sandbox_changelist",
    "admin:sandboxes_database_changelist",
    "admin:sandboxes_resourceevent_changelist",
    "admin:projects_project_changelist",
    "admin:projects_projecttask_changelist",
    "admin:core_auditentry_changelist",
    "admin:userconfig_userconfig_changelist",
    "admin:userconfig_user_changelist",
]
FILTERS = [
    "",
    "?past_deadline=yes",
    "?lease_held=yes",
    "?in_error=yes",
    "?kubeconfig_failing=yes",
    "?transitional=yes",
    "?q=owner1",
    "?status__exact=ERROR&o=4",
]


def test_changelists_and_filters_run_a_bounded_number_of_queries(
    many, su_client, django_assert_max_num_queries
):
    pages = [reverse(name) for name in CHANGELISTS]
    for name in ["admin:sandboxes_sandbox_changelist", "admin:sandboxes_database_changelist"]:
        pages += [reverse(name) + query for query in FILTERS]
    pages += [reverse("admin:projects_project_changelist") + "?kubeconfig_failing=yes&q=P1"]
    pages += [reverse("admin:core_auditentry_changelist") + "?actor_kind=user&action_group=project."]
    for url in pages:
        with django_assert_max_num_queries(BOUND, info=url):
            response = su_client.get(url)
        assert response.status_code == 200, url
        cl = response.context["cl"]
        assert len(cl.result_list) == min(100, cl.result_count), url
    # the rows really are there: full pages on the big lists
    for name in CHANGELISTS[:6]:
        assert len(su_client.get(reverse(name)).context["cl"].result_list) == 100, name


def test_filters_select_the_right_rows(many, su_client):
    url = reverse("admin:sandboxes_sandbox_changelist")

    def count(query):
        return su_client.get(url + query).context["cl"].result_count

    per_status = ROWS // 6 + (1 if ROWS % 6 > 0 else 0)  # CREATING is first in the cycle
    assert count("?past_deadline=yes") == per_status  # CREATING 2 h old; ERROR has no deadline
    assert count("?in_error=yes") == Sandbox.objects.filter(status="ERROR").count()
    assert count("?lease_held=yes") == Sandbox.objects.filter(locked_until__gt=timezone.now()).count()
    failing = Sandbox.objects.filter(
        project__owner__configs__key="KUBECONFIG",
        project__owner__configs__check_status__in=["FAILED", "UNREACHABLE"],
    ).count()
    assert failing and count("?kubeconfig_failing=yes") == failing


def test_project_and_user_pages_with_many_rows(many, su_client, django_assert_max_num_queries):
    project = many["projects"][0]
    with django_assert_max_num_queries(25):
        assert su_client.get(reverse("admin:projects_project_change", args=[project.pk])).status_code == 200
    with django_assert_max_num_queries(25):
        sandbox = many["sandboxes"][0]
        assert su_client.get(reverse("admin:sandboxes_sandbox_change", args=[sandbox.pk])).status_code == 200


def test_overview_is_constant_and_shows_the_stuck(many, su_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(14):
        response = su_client.get(reverse("admin:overview"))
    content = response.content.decode()
    assert response.status_code == 200
    data = response.context["data"]
    sandboxes = next(k for k in data["kinds"] if k["kind"] == "sandbox")
    assert sandboxes["total"] == ROWS
    assert sandboxes["past_deadline"] == Sandbox.objects.filter(status="CREATING").count()
    assert len(sandboxes["stuck_rows"]) == 50
    assert sandboxes["oldest_age"] >= timedelta(hours=2) - timedelta(minutes=1)
    assert sandboxes["errors"][0]["last_error"] == "boom"
    assert sandboxes["errors"][0]["n"] == Sandbox.objects.filter(status="ERROR").count()
    assert "boom" in content and "db boom" in content
    assert f"Sandboxes — {ROWS}" in content
    assert reverse("admin:sandboxes_sandbox_change", args=[sandboxes["stuck"][0].pk]) in content
