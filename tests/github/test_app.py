"""The GitHub App: install → callback → recorded; webhooks verified, once per delivery; the picker API;
imports refused from unusable or foreign installations; no token or key leaks."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client
from rest_framework.test import APIClient

from github.models import GitHubInstallation, InstallationStatus, WebhookDelivery
from projects.models import Project, ProjectTask, TaskStatus, TaskType
from tests.factories import KubeconfigFactory, UserFactory
from tests.github.helpers import github_settings, install_through_browser, post_webhook, relay

pytestmark = pytest.mark.django_db


@pytest.fixture
def gh(fakegithub):
    with github_settings(fakegithub):
        yield fakegithub


@pytest.fixture
def browser(user):
    user.save()  # the factory's password, so the session's auth hash holds
    client = Client()
    client.force_login(user)
    return client


def _installed(gh, browser, user, **repo_kw):
    gh.create_repo("octocat", "hello-world", **repo_kw)
    response = install_through_browser(gh, browser)
    assert response.status_code == 302
    return GitHubInstallation.objects.get(user=user)


def test_install_callback_records_the_installation(gh, browser, user):
    row = _installed(gh, browser, user)
    assert (row.account_login, row.account_type, row.repository_selection, row.status) == (
        "octocat",
        "User",
        "all",
        InstallationStatus.ACTIVE,
    )
    assert row.account_avatar_url.endswith("/avatars/octocat.png")
    assert gh.counters.get("jwt_accepted", 0) >= 1  # the callback asked GitHub, as the App


def test_callback_with_another_users_state_records_nothing(gh, user, other_user):
    user.save()
    other_user.save()
    theirs = Client()
    theirs.force_login(other_user)
    gh.callback_url = "http://testserver/github/callback"
    state_url = theirs.get("/github/connect")["Location"]
    inst = gh.create_installation("octocat")
    mine = Client()
    mine.force_login(user)
    state = state_url.split("state=", 1)[1]
    response = mine.get(
        f"/github/callback?installation_id={inst['id']}&state={state}&code={gh.new_code('octocat')}"
    )
    assert response.status_code == 302
    assert not GitHubInstallation.objects.exists()
    bad = mine.get(f"/github/callback?installation_id={inst['id']}&state=forged&code=x")
    assert bad.status_code == 302 and not GitHubInstallation.objects.exists()


def test_callback_refuses_an_installation_the_returning_github_user_cannot_access(gh, browser, user):
    gh.ensure_user("mallory")
    victim = gh.create_installation("victim-org", account_type="Organization")
    gh.callback_url = "http://testserver/github/callback"
    state = browser.get("/github/connect")["Location"].split("state=", 1)[1]
    code = gh.new_code("mallory")  # mallory installs nothing but pastes the victim's installation id
    browser.get(f"/github/callback?installation_id={victim['id']}&state={state}&code={code}")
    assert not GitHubInstallation.objects.exists()


def test_bad_signature_is_401_and_changes_nothing(gh, browser, user):
    row = _installed(gh, browser, user)
    headers, body = gh.webhook(
        "installation", {"action": "deleted", "installation": {"id": row.installation_id}}
    )
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    response = post_webhook(browser, headers, body)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    row.refresh_from_db()
    assert row.status == InstallationStatus.ACTIVE
    assert not WebhookDelivery.objects.filter(delivery_id=headers["X-GitHub-Delivery"]).exists()


def test_replayed_delivery_has_no_second_effect(gh, browser, user):
    row = _installed(gh, browser, user)
    start = len(gh.state["deliveries"])
    gh.set_suspended(row.installation_id, True)
    suspend = gh.state["deliveries"][-1]
    gh.set_suspended(row.installation_id, False)
    assert [r.status_code for r in relay(gh, browser, since=start)] == [200, 200]
    row.refresh_from_db()
    assert row.status == InstallationStatus.ACTIVE
    headers, body = gh.webhook(suspend["event"], suspend["payload"], delivery=suspend["id"])
    replay = post_webhook(browser, headers, body)
    assert replay.status_code == 200 and "duplicate" in replay.json()["outcome"]
    row.refresh_from_db()
    assert row.status == InstallationStatus.ACTIVE  # the replayed "suspend" did nothing


@pytest.fixture
def picker(gh, browser, user):
    KubeconfigFactory(user=user)
    row = _installed(gh, browser, user)
    api = APIClient()
    api.force_authenticate(user)
    return gh, row, api


def test_deleted_or_suspended_installation_blocks_imports_with_the_reason(picker, browser):
    gh, row, api = picker
    start = len(gh.state["deliveries"])
    gh.set_suspended(row.installation_id, True)
    relay(gh, browser, since=start)
    body = {"installation_id": row.installation_id, "repository": "octocat/hello-world"}
    refused = api.post("/api/v1/projects/import", body, format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "installation_unavailable"
    assert "suspended" in refused.json()["message"]
    start = len(gh.state["deliveries"])
    gh.delete_installation(row.installation_id)
    relay(gh, browser, since=start)
    row.refresh_from_db()
    assert row.status == InstallationStatus.DELETED
    refused = api.post("/api/v1/projects/import", body, format="json")
    assert refused.status_code == 409
    assert "uninstalled from octocat" in refused.json()["message"]
    assert not Project.objects.exists()


def test_repository_picker_reads_every_page(picker):
    gh, row, api = picker
    for n in range(149):
        gh.state["repos"][f"octocat/repo-{n:03d}"] = {
            "id": 5000 + n,
            "private": n % 2 == 0,
            "default_branch": "trunk" if n == 7 else "main",
            "description": "",
        }
    listed = api.get(f"/api/v1/github/installations/{row.installation_id}/repositories")
    assert listed.status_code == 200, listed.content
    data = listed.json()
    assert data["count"] == 150 and data["pages"] == 2 and len(data["results"]) == 100
    second = api.get(f"/api/v1/github/installations/{row.installation_id}/repositories?page=2").json()
    assert len(second["results"]) == 50
    names = {r["full_name"] for r in data["results"] + second["results"]}
    assert "octocat/repo-148" in names and "octocat/hello-world" in names
    found = api.get(f"/api/v1/github/installations/{row.installation_id}/repositories?search=REPO-007").json()
    assert [(r["full_name"], r["default_branch"]) for r in found["results"]] == [
        ("octocat/repo-007", "trunk")
    ]
    installations = api.get("/api/v1/github/installations").json()
    assert [i["id"] for i in installations["results"]] == [row.installation_id]
    assert installations["results"][0]["usable"] is True


def test_another_users_installation_is_404(picker):
    _gh, row, _ = picker
    stranger = UserFactory()
    KubeconfigFactory(user=stranger)
    api = APIClient()
    api.force_authenticate(stranger)
    assert api.get(f"/api/v1/github/installations/{row.installation_id}/repositories").status_code == 404
    response = api.post(
        "/api/v1/projects/import",
        {"installation_id": row.installation_id, "repository": "octocat/hello-world"},
        format="json",
    )
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message", "details"}
    assert not Project.objects.exists()


def test_import_writes_project_sandbox_and_clone_task_together(picker):
    gh, row, api = picker
    response = api.post(
        "/api/v1/projects/import",
        {"installation_id": row.installation_id, "repository": "octocat/hello-world"},
        format="json",
    )
    assert response.status_code == 202, response.content
    project = Project.objects.get(pk=response.json()["id"])
    assert project.name == "hello-world"
    assert (project.github_repo_full_name, project.github_default_branch) == ("octocat/hello-world", "main")
    assert project.github_installation == row
    task = ProjectTask.objects.get(project=project)
    assert task.type == TaskType.CLONE_REPOSITORY
    assert task.status == TaskStatus.WAITING_FOR_PREREQUISITES
    assert task.sandbox == project.sandboxes.get()
    assert task.payload == {
        "installation_id": row.installation_id,
        "repository": "octocat/hello-world",
        "repository_id": gh.state["repos"]["octocat/hello-world"]["id"],
        "branch": "main",
    }


def test_import_refuses_a_missing_branch_or_repository(picker):
    _gh, row, api = picker
    missing = api.post(
        "/api/v1/projects/import",
        {"installation_id": row.installation_id, "repository": "octocat/hello-world", "branch": "nope"},
        format="json",
    )
    assert missing.status_code == 400 and missing.json()["code"] == "branch_not_found"
    gone = api.post(
        "/api/v1/projects/import",
        {"installation_id": row.installation_id, "repository": "octocat/unknown"},
        format="json",
    )
    assert gone.status_code == 404
    assert not Project.objects.exists()


def test_no_token_or_private_key_in_logs_responses_or_admin(picker, caplog, admin_client):
    gh, row, api = picker
    caplog.set_level(logging.DEBUG)
    pages = [
        api.get("/api/v1/github/installations"),
        api.get(f"/api/v1/github/installations/{row.installation_id}/repositories"),
        api.post(
            "/api/v1/projects/import",
            {"installation_id": row.installation_id, "repository": "octocat/hello-world"},
            format="json",
        ),
        api.post(
            "/api/v1/projects/import",
            {"installation_id": row.installation_id, "repository": "octocat/hello-world", "branch": "x"},
            format="json",
        ),
        admin_client.get("/admin/github/githubinstallation/"),
        admin_client.get(f"/admin/github/githubinstallation/{row.pk}/change/"),
        admin_client.get("/admin/github/webhookdelivery/"),
        admin_client.get("/admin/projects/projecttask/"),
    ]
    tokens = list(gh.state["tokens"])
    assert tokens, "Tenter asked for installation tokens"
    key_lines = [line for line in gh.private_key_pem.splitlines() if "-----" not in line]
    secrets = [*tokens, gh.state["app"]["webhook_secret"], gh.state["app"]["client_secret"], *key_lines[:3]]
    blobs = [caplog.text, json.dumps([t.payload for t in ProjectTask.objects.all()])]
    blobs += [p.content.decode() for p in pages]
    for page in pages:
        assert page.status_code < 500
    for blob in blobs:
        for secret in secrets:
            assert secret not in blob


def test_project_page_shows_importing_then_needs_attention_with_retry(picker, browser):
    _, row, api = picker
    created = api.post(
        "/api/v1/projects/import",
        {"installation_id": row.installation_id, "repository": "octocat/hello-world"},
        format="json",
    ).json()
    page = browser.get(f"/projects/{created['id']}/").content.decode()
    assert 'data-state="importing"' in page and "Importing" in page
    listing = browser.get("/").content.decode()
    assert "Importing" in listing
    task = ProjectTask.objects.get(project_id=created["id"])
    message = "Failed after 3 attempts: exit 4: fatal: Authentication failed for 'http://x/octocat/hello-world.git/'"
    ProjectTask.objects.filter(pk=task.pk).update(status=TaskStatus.FAILED, error=message, attempts=3)
    page = browser.get(f"/projects/{created['id']}/").content.decode()
    assert 'data-state="needs_attention"' in page and "Needs attention" in page
    assert "fatal: Authentication failed" in page
    retry_url = f"/projects/{created['id']}/tasks/{task.pk}/retry"
    assert f'action="{retry_url}"' in page
    assert "Needs attention" in browser.get("/").content.decode()
    browser.post(retry_url)
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    detail = api.get(f"/api/v1/projects/{created['id']}").json()
    assert detail["github_import"]["state"] == "importing"
