"""Adding, removing and revealing a project's PostgreSQL database."""

import pytest

from core.models import AuditEntry
from projects.models import Environment
from sandboxes.models import Database, Sandbox
from tests.factories import DatabaseFactory, EnvironmentFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user, kubeconfig):
    project = ProjectFactory(owner=user, status="RUNNING")
    SandboxFactory(project=project, status="RUNNING", k8s_namespace=kubeconfig.namespace)
    return project


def test_add_records_a_creating_database_and_returns_202(api, project, kubeconfig):
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "CREATING"
    assert body["k8s_namespace"] == kubeconfig.namespace
    assert body["k8s_name"].startswith("project-") and "-db-" in body["k8s_name"]
    assert body["api_version"] == "apps.kubeblocks.io/v1"
    assert body["connection_ready"] is False
    project.refresh_from_db()
    assert project.status == "CREATING"


def test_one_database_per_project(api, project):
    assert api.post(f"/api/v1/projects/{project.pk}/databases", format="json").status_code == 202
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "database_exists"
    assert Database.objects.filter(project=project).count() == 1


def test_add_needs_a_kubeconfig(api, user):
    project = ProjectFactory(owner=user)
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "kubeconfig_required"


def test_add_is_refused_while_the_project_is_being_deleted(api, project):
    Sandbox.objects.filter(project=project).update(status="TERMINATING")
    project.status = "TERMINATING"
    project.save()
    assert api.post(f"/api/v1/projects/{project.pk}/databases", format="json").status_code == 409


def test_remove_marks_terminating_and_drops_database_url(api, project):
    database = DatabaseFactory(project=project, status="RUNNING", k8s_namespace="ns")
    EnvironmentFactory(
        project=project, key="DATABASE_URL", value="postgresql://x", is_system=True, is_secret=True
    )
    response = api.delete(f"/api/v1/projects/{project.pk}/databases/{database.pk}")
    assert response.status_code == 202
    assert response.json()["status"] == "TERMINATING"
    assert not Environment.objects.filter(project=project, key="DATABASE_URL").exists()
    # the running sandbox must drop the variable too
    assert Sandbox.objects.get(project=project).status == "UPDATING"
    assert api.delete(f"/api/v1/projects/{project.pk}/databases/{database.pk}").status_code == 409


def test_connection_is_revealed_only_when_ready_and_audited(api, user, project):
    database = DatabaseFactory(project=project, status="CREATING")
    url = f"/api/v1/projects/{project.pk}/databases/{database.pk}/connection"
    assert api.get(url).status_code == 409
    Database.objects.filter(pk=database.pk).update(
        host="db-postgresql.ns.svc", port=5432, username="postgres"
    )
    database.refresh_from_db()
    database.password = "p@ss/word"
    database.save()
    response = api.get(url)
    assert response.status_code == 200
    assert response.json()["url"] == "postgresql://postgres:p%40ss%2Fword@db-postgresql.ns.svc:5432/postgres"
    assert AuditEntry.objects.filter(action="reveal.database_connection", actor=user).exists()
    # the plain project detail never carries the password
    assert "p@ss" not in api.get(f"/api/v1/projects/{project.pk}").content.decode()


def test_add_refuses_unknown_fields(api, project):
    response = api.post(f"/api/v1/projects/{project.pk}/databases", {"size": "100Gi"}, format="json")
    assert response.status_code == 400


# --- the user's own DATABASE_URL is never silently replaced ---------------------------------------


def test_a_users_own_database_url_blocks_adding_a_database(api, project):
    EnvironmentFactory(project=project, key="DATABASE_URL", value="postgres://mine")
    response = api.post(f"/api/v1/projects/{project.pk}/databases", format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "database_url_taken"
    assert "remove or rename yours" in body["message"]
    assert not Database.objects.filter(project=project).exists()
    assert Environment.objects.get(project=project, key="DATABASE_URL").value == "postgres://mine"


def test_database_url_is_reserved_while_the_project_has_a_database(api, project):
    assert api.post(f"/api/v1/projects/{project.pk}/databases", format="json").status_code == 202
    response = api.put(
        f"/api/v1/projects/{project.pk}/env",
        {"variables": [{"key": "DATABASE_URL", "value": "postgres://mine"}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "system_variable"
    assert not Environment.objects.filter(project=project, key="DATABASE_URL").exists()


def test_the_system_never_replaces_or_removes_a_users_own_database_url(project):
    from core.audit import SYSTEM
    from projects.services import set_system_variable

    EnvironmentFactory(project=project, key="DATABASE_URL", value="postgres://mine")
    set_system_variable(project=project, key="DATABASE_URL", value="postgres://tenter", actor=SYSTEM)
    row = Environment.objects.get(project=project, key="DATABASE_URL")
    assert (row.value, row.is_system) == ("postgres://mine", False)
    set_system_variable(project=project, key="DATABASE_URL", value=None, actor=SYSTEM)
    assert Environment.objects.get(project=project, key="DATABASE_URL").value == "postgres://mine"
