"""Rate limits in the shared cache (real Redis): API throttles per user (reads, lifecycle writes) and
dashboard sign-in attempts per account and per address. Refusals are 429 with Retry-After."""

import uuid

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    settings.API_THROTTLE_RATES = {"read": "3/minute", "lifecycle_write": "2/minute"}
    return settings


def assert_throttled(response):
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 61
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == "throttled"
    assert body["details"]["retry_after"] == int(response["Retry-After"])


def test_lifecycle_writes_are_throttled_per_user(rates, api, kubeconfig, user):
    for i in range(2):
        assert api.post("/api/v1/projects", {"name": f"P{i}"}, format="json").status_code == 202
    assert_throttled(api.post("/api/v1/projects", {"name": "P3"}, format="json"))
    project_id = api.get("/api/v1/projects").json()["results"][0]["id"]
    assert_throttled(api.post(f"/api/v1/projects/{project_id}/stop"))
    assert_throttled(api.delete(f"/api/v1/projects/{project_id}"))
    # other writes (settings) are not lifecycle writes; another user has their own budget
    assert api.put("/api/v1/me/agent", {"model": "m"}, format="json").status_code == 200
    other = APIClient()
    other.force_authenticate(UserFactory())
    assert other.post("/api/v1/projects", {"name": "Theirs"}, format="json").status_code != 429


def test_reads_are_throttled_per_user(rates, api):
    for _ in range(3):
        assert api.get("/api/v1/projects").status_code == 200
    assert_throttled(api.get("/api/v1/me/tokens"))


# --- dashboard sign-in -----------------------------------------------------------------------------


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 600
    return settings


def address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def sign_in(client, username, password, ip, **extra):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def test_login_is_refused_after_the_failures_per_account(limits, client):
    user = UserFactory(username=f"victim-{uuid.uuid4().hex[:6]}")
    user.save()
    for _ in range(3):
        response = sign_in(client, user.username, "wrong", address())
        assert response.status_code == 200 and b"correct username and password" in response.content
    refused = sign_in(client, user.username, "correct-horse-battery", address())
    assert refused.status_code == 429
    assert 590 <= int(refused["Retry-After"]) <= 601
    assert b"Too many failed sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session
    as_json = sign_in(client, user.username.upper(), "wrong", address(), HTTP_ACCEPT="application/json")
    assert as_json.status_code == 429 and as_json["Retry-After"]
    assert as_json.json()["code"] == "throttled"
    # another account from the same addresses is unaffected
    other = UserFactory()
    other.save()
    assert sign_in(client, other.username, "correct-horse-battery", address()).status_code == 302


def test_login_is_refused_after_the_failures_per_address(limits, client):
    ip = address()
    for i in range(3):
        assert sign_in(client, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "wrong", ip).status_code == 200
    user = UserFactory()
    user.save()
    refused = sign_in(client, user.username, "correct-horse-battery", ip)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert sign_in(client, user.username, "correct-horse-battery", address()).status_code == 302


def test_a_successful_sign_in_clears_the_account_failures(limits, client):
    user = UserFactory()
    user.save()
    for _ in range(2):
        sign_in(client, user.username, "wrong", address())
    assert sign_in(client, user.username, "correct-horse-battery", address()).status_code == 302
    client.logout()
    for _ in range(2):
        assert sign_in(client, user.username, "wrong", address()).status_code == 200
    assert sign_in(client, user.username, "correct-horse-battery", address()).status_code == 302


# --- dashboard lifecycle actions: the same per-user bucket as the API ------------------------------


@pytest.fixture
def dashboard(client, user):
    user.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(user)
    return client


def test_dashboard_lifecycle_actions_share_the_api_budget_and_lose_nothing(rates, dashboard, api, kubeconfig):
    from django.urls import reverse

    from projects.models import Environment, Project

    assert api.post("/api/v1/projects", {"name": "First"}, format="json").status_code == 202
    project = Project.objects.get(name="First")
    assert dashboard.post(reverse("dashboard:create"), {"name": "Second"}).status_code == 302
    # The bucket (2 a minute) is spent: a create through the form comes back filled in, with a 429.
    refused = dashboard.post(reverse("dashboard:create"), {"name": "Third", "description": "kept"})
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 61
    page = refused.content.decode()
    assert "Too many changes in a short time" in page and "Nothing was changed." in page
    assert 'value="Third"' in page and "kept" in page
    assert not Project.objects.filter(name="Third").exists()
    # An env save keeps what was typed.
    refused = dashboard.post(
        reverse("dashboard:env-save", args=[project.pk]), {"key": "MY_KEY", "value": "typed-value"}
    )
    assert refused.status_code == 429
    assert 'value="MY_KEY"' in refused.content.decode()
    assert not Environment.objects.filter(project=project, key="MY_KEY").exists()
    # A button (stop) says so plainly and changes nothing; fetch/JSON callers get the usual 429 body.
    refused = dashboard.post(reverse("dashboard:stop", args=[project.pk]), follow=True)
    assert "Too many changes in a short time" in refused.content.decode()
    assert_throttled(
        dashboard.post(reverse("dashboard:stop", args=[project.pk]), HTTP_ACCEPT="application/json")
    )
    assert_throttled(api.post(f"/api/v1/projects/{project.pk}/stop"))
    assert Project.objects.get(pk=project.pk).status == "CREATING"
