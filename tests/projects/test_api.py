"""The project REST API: success paths, 401, 404 for other users' objects, 400s and 409s."""

import pytest

from core.models import AuditEntry
from projects.models import Environment, Project
from sandboxes.models import Database, ResourceEvent, Sandbox
from tests.factories import DatabaseFactory, KubeconfigFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


def create(api, name="My App", **extra):
    return api.post("/api/v1/projects", {"name": name, **extra}, format="json")


def test_create_records_intent_and_returns_202_with_sandbox(api, kubeconfig):
    response = create(api, description="hello")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "CREATING"
    assert body["name"] == "My App"
    [sandbox] = body["sandboxes"]
    assert sandbox["status"] == "CREATING"
    assert sandbox["k8s_namespace"] == kubeconfig.namespace
    assert sandbox["k8s_name"].startswith("my-app-") and len(sandbox["k8s_name"]) == len("my-app-") + 8
    assert sandbox["public_url"] == f"https://{sandbox['k8s_name']}-app.k8s.example.test"
    env = {e["key"]: e for e in body["environment"]}
    assert set(env) == {
        "TTYD_ACCESS_TOKEN",
        "FILE_BROWSER_USERNAME",
        "FILE_BROWSER_PASSWORD",
        "TENTER_HEARTBEAT_TOKEN",
    }
    assert env["TENTER_HEARTBEAT_TOKEN"]["value"] == "••••••••"
    assert env["TTYD_ACCESS_TOKEN"]["value"] == "••••••••"
    stored = Environment.objects.get(project_id=body["id"], key="TTYD_ACCESS_TOKEN")
    assert len(stored.value) == 24 and stored.value not in response.content.decode()
    event = ResourceEvent.objects.get(resource_id=sandbox["id"])
    assert (event.from_status, event.to_status, event.actor) == ("", "CREATING", "user")
    assert AuditEntry.objects.filter(action="project.create", target_id=body["id"]).exists()


def test_create_without_kubeconfig_is_refused_and_stores_nothing(api):
    response = create(api)
    assert response.status_code == 400
    assert response.json()["code"] == "kubeconfig_required"
    assert "kubeconfig" in response.json()["message"].lower()
    assert not Project.objects.exists()


def test_create_with_failed_kubeconfig_check_is_refused(api, user):
    KubeconfigFactory(
        user=user, check_status="FAILED", check_message="forbidden: cannot create statefulsets."
    )
    response = create(api)
    assert response.status_code == 400
    assert "cannot create statefulsets" in response.json()["message"]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("1app", "must start with a letter"),
        ("-app", "must start with a letter"),
        ("my_app", "letters, digits, spaces and hyphens"),
        ("app!", "letters, digits, spaces and hyphens"),
        ("é-app", "must start with a letter"),
        ("a" * 64, "at most 63"),
    ],
)
def test_create_rejects_bad_names(api, kubeconfig, name, fragment):
    response = create(api, name=name)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_name"
    assert fragment in response.json()["message"]
    assert not Project.objects.exists()


def test_create_accepts_the_longest_valid_name(api, kubeconfig):
    response = create(api, name="A" + "b c-" * 15 + "xy")
    assert response.status_code == 202


def test_duplicate_name_is_a_409(api, kubeconfig):
    assert create(api).status_code == 202
    response = create(api)
    assert response.status_code == 409
    assert response.json()["code"] == "name_taken"
    assert Project.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"name": "ok", "unexpected": 1}, "invalid"),
        ({"name": 123}, "invalid_name"),
        ({"name": ["a"]}, "invalid"),
        ({}, "invalid"),
    ],
)
def test_create_rejects_bad_payloads(api, kubeconfig, payload, code):
    response = api.post("/api/v1/projects", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert not Project.objects.exists()


def test_malformed_json_is_a_400_with_a_code(api, kubeconfig):
    response = api.post("/api/v1/projects", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/projects"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/me/kubeconfig"),
        ("get", "/api/v1/me/agent"),
        ("get", "/api/v1/projects/00000000-0000-0000-0000-000000000000"),
    ],
)
def test_unauthenticated_requests_get_401(anon, method, path):
    response = getattr(anon, method)(path)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_token_auth_works(anon, user):
    from core.audit import SYSTEM
    from userconfig.services import api_token_create

    _, secret = api_token_create(user=user, name="t", actor=SYSTEM)
    anon.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert anon.get("/api/v1/projects").status_code == 200
    anon.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert anon.get("/api/v1/projects").status_code == 401


def test_list_is_paginated_filtered_and_scoped_to_the_owner(api, user, other_user):
    for i in range(3):
        SandboxFactory(
            project=ProjectFactory(owner=user, name=f"Mine {i}", status="RUNNING"), status="RUNNING"
        )
    SandboxFactory(project=ProjectFactory(owner=user, name="Stopped one", status="STOPPED"), status="STOPPED")
    ProjectFactory(owner=other_user, name="Theirs")
    body = api.get("/api/v1/projects?page_size=2").json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]
    names = {p["name"] for p in api.get("/api/v1/projects").json()["results"]}
    assert "Theirs" not in names
    running = api.get("/api/v1/projects?status=RUNNING").json()
    assert running["count"] == 3
    assert all(p["allowed_actions"] == ["stop", "delete"] for p in running["results"])
    assert api.get("/api/v1/projects?status=NOPE").json()["code"] == "invalid_filter"


def test_list_runs_a_constant_number_of_queries(api, user, django_assert_max_num_queries):
    for i in range(30):
        project = ProjectFactory(owner=user, name=f"P{i}")
        SandboxFactory(project=project)
        DatabaseFactory(project=project)
    with django_assert_max_num_queries(5):
        assert len(api.get("/api/v1/projects").json()["results"]) == 30


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/{p}",
        "/api/v1/projects/{p}/env",
        "/api/v1/projects/{p}/events",
        "/api/v1/projects/{p}/tasks",
        "/api/v1/projects/{p}/databases/{d}",
        "/api/v1/projects/{p}/databases/{d}/connection",
        "/api/v1/sandboxes/{s}",
        "/api/v1/sandboxes/{s}/terminal",
    ],
)
def test_other_users_objects_are_404(api, other_user, path):
    project = ProjectFactory(owner=other_user)
    sandbox = SandboxFactory(project=project)
    database = DatabaseFactory(project=project, host="h", username="u", password="p", port=5432)
    response = api.get(path.format(p=project.pk, s=sandbox.pk, d=database.pk))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/projects/{p}"),
        ("post", "/api/v1/projects/{p}/start"),
        ("post", "/api/v1/projects/{p}/stop"),
        ("put", "/api/v1/projects/{p}/env"),
        ("delete", "/api/v1/projects/{p}/env/FOO"),
        ("post", "/api/v1/projects/{p}/databases"),
        ("delete", "/api/v1/projects/{p}/databases/{d}"),
    ],
)
def test_writes_to_other_users_objects_are_404_and_change_nothing(api, other_user, method, path):
    project = ProjectFactory(owner=other_user, status="RUNNING")
    SandboxFactory(project=project, status="RUNNING")
    database = DatabaseFactory(project=project, status="RUNNING")
    response = getattr(api, method)(
        path.format(p=project.pk, d=database.pk), {"variables": []}, format="json"
    )
    assert response.status_code == 404
    project.refresh_from_db()
    assert project.status == "RUNNING"
    assert Database.objects.get(pk=database.pk).status == "RUNNING"


def test_malformed_ids_are_404(api):
    assert api.get("/api/v1/projects/not-a-uuid").status_code == 404
    assert api.get("/api/v1/sandboxes/123").status_code == 404


def running_project(user, *statuses):
    project = ProjectFactory(owner=user, status="RUNNING")
    for status in statuses or ("RUNNING",):
        SandboxFactory(project=project, status=status)
    from projects.transitions import refresh_project_status

    refresh_project_status(project.pk)
    project.refresh_from_db()
    return project


def test_stop_then_start_move_resources_and_return_202(api, user):
    project = running_project(user)
    response = api.post(f"/api/v1/projects/{project.pk}/stop")
    assert response.status_code == 202
    assert response.json()["status"] == "STOPPING"
    assert response.json()["sandboxes"][0]["status"] == "STOPPING"
    # STOPPING may be started again (the user changed their mind)
    response = api.post(f"/api/v1/projects/{project.pk}/start")
    assert response.status_code == 202
    assert response.json()["status"] == "STARTING"
    events = list(ResourceEvent.objects.filter(project=project).values_list("to_status", flat=True))
    assert events[:2] == ["STARTING", "STOPPING"]


def test_start_of_a_running_project_is_a_409_with_the_reason(api, user):
    project = running_project(user)
    response = api.post(f"/api/v1/projects/{project.pk}/start")
    assert response.status_code == 409
    assert response.json() == {
        "code": "invalid_state",
        "message": "Cannot start a project that is RUNNING.",
        "details": {},
    }


def test_stop_is_refused_while_a_resource_is_creating(api, user):
    project = running_project(user, "ERROR", "CREATING")
    response = api.post(f"/api/v1/projects/{project.pk}/stop")
    assert response.status_code == 409
    assert "CREATING" in response.json()["message"]
    assert set(Sandbox.objects.filter(project=project).values_list("status", flat=True)) == {
        "ERROR",
        "CREATING",
    }


def test_retry_resumes_the_failed_step(api, user):
    project = running_project(user, "ERROR")
    Sandbox.objects.filter(project=project).update(failed_status="CREATING", status_reason="boom")
    response = api.post(f"/api/v1/projects/{project.pk}/retry")
    assert response.status_code == 202
    assert response.json()["sandboxes"][0]["status"] == "CREATING"
    assert api.post(f"/api/v1/projects/{project.pk}/retry").status_code == 409


def test_start_from_error_resumes_where_it_failed(api, user):
    project = running_project(user, "ERROR")
    Sandbox.objects.filter(project=project).update(failed_status="UPDATING")
    response = api.post(f"/api/v1/projects/{project.pk}/start")
    assert response.status_code == 202
    assert response.json()["sandboxes"][0]["status"] == "UPDATING"


def test_delete_marks_everything_terminating_and_refuses_twice(api, user):
    project = running_project(user)
    DatabaseFactory(project=project, status="STOPPED")
    response = api.delete(f"/api/v1/projects/{project.pk}")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "TERMINATING"
    assert {r["status"] for r in body["sandboxes"] + body["databases"]} == {"TERMINATING"}
    second = api.delete(f"/api/v1/projects/{project.pk}")
    assert second.status_code == 409
    assert second.json()["code"] == "invalid_state"


def test_events_and_tasks_are_listed(api, user, kubeconfig):
    project_id = create(api).json()["id"]
    events = api.get(f"/api/v1/projects/{project_id}/events").json()
    assert events["count"] == 1 and events["results"][0]["to_status"] == "CREATING"
    assert events["results"][0]["actor_username"] == user.username
    assert api.get(f"/api/v1/projects/{project_id}/tasks").json()["count"] == 0


def test_terminal_reveal_is_owner_only_and_audited(api, user, kubeconfig):
    body = create(api).json()
    sandbox_id = body["sandboxes"][0]["id"]
    response = api.get(f"/api/v1/sandboxes/{sandbox_id}/terminal")
    assert response.status_code == 200
    token = Environment.objects.get(project_id=body["id"], key="TTYD_ACCESS_TOKEN").value
    import base64
    from urllib.parse import quote

    expected = quote(base64.b64encode(f"user:{token}".encode()).decode(), safe="/=")
    assert response.json()["terminal_url"].endswith(f"?authorization={expected}")
    assert response["Cache-Control"] == "no-store"
    assert AuditEntry.objects.filter(action="reveal.terminal", target_id=sandbox_id, actor=user).exists()
    # the plain sandbox view never carries the token
    assert token not in api.get(f"/api/v1/sandboxes/{sandbox_id}").content.decode()


def test_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ["/api/v1/projects", "/api/v1/me/kubeconfig", "/api/v1/sandboxes/{sandbox_id}/terminal"]:
        assert path in text
    assert api.get("/api/docs/").status_code == 200


def test_a_sandbox_name_collision_is_drawn_again(api, kubeconfig, monkeypatch):
    from reconcile import names

    drawn = iter(["same-aaaaaaaa", "same-aaaaaaaa", "same-bbbbbbbb"])
    monkeypatch.setattr(names, "resource_name", lambda project_name: next(drawn))
    assert create(api, name="First").json()["sandboxes"][0]["k8s_name"] == "same-aaaaaaaa"
    response = create(api, name="Second")
    assert response.status_code == 202
    assert response.json()["sandboxes"][0]["k8s_name"] == "same-bbbbbbbb"
    assert Project.objects.count() == 2
