"""Personal API tokens: created once with their secret, stored as hashes only, refused once revoked or
expired, scoped to their owner, usable with `Token` or `Bearer`, and DRF's old keys keep working."""

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from core.audit import SYSTEM
from core.models import AuditEntry
from tests.factories import KUBECONFIG_TEMPLATE, UserFactory
from userconfig import services
from userconfig.models import ApiToken

pytestmark = pytest.mark.django_db


def client_with(secret: str, keyword: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {secret}")
    return client


def create(api, **data):
    return api.post("/api/v1/me/tokens", data, format="json")


def test_create_returns_the_secret_once_and_it_works_with_token_or_bearer(api, user):
    response = create(api, name="laptop")
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["token"]
    assert body["name"] == "laptop" and body["prefix"] == secret[:8] and body["expires_at"] is None
    listed = api.get("/api/v1/me/tokens")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()] == ["laptop"]
    assert "token" not in listed.json()[0] and secret not in listed.content.decode()
    for keyword in ("Token", "Bearer", "bearer"):
        assert client_with(secret, keyword).get("/api/v1/projects").status_code == 200, keyword
    assert AuditEntry.objects.filter(action="api_token.create", actor=user).count() == 1


def test_a_token_works_until_revoked_then_401(api, user):
    secret = create(api, name="ci").json()["token"]
    token = ApiToken.objects.get()
    assert client_with(secret).get("/api/v1/projects").status_code == 200
    assert api.delete(f"/api/v1/me/tokens/{token.pk}").status_code == 204
    refused = client_with(secret).get("/api/v1/projects")
    assert refused.status_code == 401
    assert refused.json()["code"] == "authentication_failed"
    assert secret not in refused.content.decode()
    assert api.get("/api/v1/me/tokens").json() == []
    assert api.delete(f"/api/v1/me/tokens/{token.pk}").status_code == 404  # already revoked
    entry = AuditEntry.objects.get(action="api_token.revoke")
    assert (entry.actor, entry.target_id) == (user, str(token.pk))


def test_a_token_works_until_it_expires_then_401(api):
    body = create(api, name="short", expires_in_days=1).json()
    assert body["expires_at"] is not None
    assert client_with(body["token"]).get("/api/v1/projects").status_code == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(body["token"], "Bearer").get("/api/v1/projects").status_code == 401


def test_wrong_malformed_and_inactive_user_tokens_are_401(user):
    _, secret = services.api_token_create(user=user, name="x", actor=SYSTEM)
    for header in ["Token wrong", "Bearer", f"Token {secret} extra", "Token " + "a" * 300]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        assert client.get("/api/v1/projects").status_code == 401, header
    user.is_active = False
    user.save()
    assert client_with(secret).get("/api/v1/projects").status_code == 401


def test_the_database_holds_no_usable_token(api, caplog):
    caplog.set_level(logging.DEBUG)
    secret = create(api, name="laptop").json()["token"]
    client_with(secret).get("/api/v1/projects")
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}" AS r WHERE strpos(r::text, %s) > 0', [secret])
            assert cursor.fetchone()[0] == 0, f"the secret is stored in {table}"
            cursor.execute(
                f'SELECT count(*) FROM "{table}" AS r WHERE strpos(r::text, %s) > 0', [secret[8:24]]
            )
            assert cursor.fetchone()[0] == 0, f"part of the secret is stored in {table}"
    assert ApiToken.objects.get().token_hash != secret
    assert secret not in caplog.text


def test_another_users_token_is_404_on_revoke(api, user):
    other = UserFactory()
    theirs, their_secret = services.api_token_create(user=other, name="theirs", actor=SYSTEM)
    response = api.delete(f"/api/v1/me/tokens/{theirs.pk}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    for bad in ["abc", "99999999999999999999999", "-1"]:
        assert api.delete(f"/api/v1/me/tokens/{bad}").status_code == 404
    assert api.get("/api/v1/me/tokens").json() == []
    assert client_with(their_secret).get("/api/v1/projects").status_code == 200
    assert not AuditEntry.objects.filter(action="api_token.revoke").exists()


@pytest.mark.parametrize(
    "data",
    [{}, {"name": ""}, {"name": "x" * 101}, {"name": "a", "expires_in_days": 0}, {"name": "a", "x": 1}],
)
def test_bad_input_is_400_with_the_error_body(api, data):
    response = create(api, **data)
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "details"}
    assert not ApiToken.objects.exists()


def test_last_used_at_is_updated_at_most_once_a_minute(user):
    token, secret = services.api_token_create(user=user, name="x", actor=SYSTEM)
    assert token.last_used_at is None
    client_with(secret).get("/api/v1/projects")
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    client_with(secret).get("/api/v1/projects")
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(seconds=61))
    client_with(secret).get("/api/v1/projects")
    assert ApiToken.objects.get().last_used_at > first


def test_create_api_token_command_prints_a_working_token(user):
    out = io.StringIO()
    call_command("create_api_token", user.username, "--name", "cli", "--expires-days", "3", stdout=out)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert (token.name, token.prefix) == ("cli", secret[:8])
    assert timedelta(days=2) < token.expires_at - timezone.now() <= timedelta(days=3)
    assert client_with(secret).get("/api/v1/projects").status_code == 200


def test_demo_setup_writes_a_working_token_and_replaces_its_previous_one(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_TEMPLATE.format(namespace="ns-demo"))
    args = ["--password", "p-demo-1", "--admin-password", "p-admin-1", "--kubeconfig", str(kubeconfig)]
    secrets = []
    for _ in range(2):
        call_command("demo_setup", *args, "--token-file", str(tmp_path / "token"), stdout=io.StringIO())
        secrets.append((tmp_path / "token").read_text())
    assert secrets[0] != secrets[1]
    assert client_with(secrets[0]).get("/api/v1/projects").status_code == 401
    assert client_with(secrets[1]).get("/api/v1/projects").status_code == 200


def test_admin_revoke_action_service_revokes_every_token(user):
    _, one = services.api_token_create(user=user, name="a", actor=SYSTEM)
    _, two = services.api_token_create(user=user, name="b", actor=SYSTEM)
    report = services.revoke_api_tokens(user_ids=[user.pk, 0], actor=SYSTEM)
    assert report.done == [str(user.pk)]
    for secret in (one, two):
        assert client_with(secret).get("/api/v1/projects").status_code == 401


# --- the dashboard's Settings section --------------------------------------------------------------


def test_settings_creates_shows_the_secret_once_and_revokes(client, user):
    user.save()
    client.force_login(user)
    page = client.post("/settings/tokens", {"name": "from settings", "expires_in_days": "30"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    token = ApiToken.objects.get()
    html = page.content.decode()
    secret = html.split('id="new-token-secret">')[1].split("<")[0]
    assert secret.startswith(token.prefix) and "shown only this once" in html
    assert client_with(secret).get("/api/v1/projects").status_code == 200
    again = client.get("/settings/").content.decode()
    assert "from settings" in again and token.prefix in again and secret not in again
    assert client.post(f"/settings/tokens/{token.pk}/revoke").status_code == 302
    assert client_with(secret).get("/api/v1/projects").status_code == 401
    assert client.post("/settings/tokens", {"name": ""}).status_code == 400


def test_settings_revoke_of_another_users_token_is_404(client, user):
    theirs, secret = services.api_token_create(user=UserFactory(), name="theirs", actor=SYSTEM)
    user.save()
    client.force_login(user)
    assert client.post(f"/settings/tokens/{theirs.pk}/revoke").status_code == 404
    assert "theirs" not in client.get("/settings/").content.decode()
    assert client_with(secret).get("/api/v1/projects").status_code == 200


# --- DRF's authtoken keys are migrated ---------------------------------------------------------------

DRF_TOKEN_TABLE = """
CREATE TABLE authtoken_token (
    key varchar(40) PRIMARY KEY,
    created timestamp with time zone NOT NULL,
    user_id bigint NOT NULL UNIQUE REFERENCES userconfig_user(id) DEFERRABLE INITIALLY DEFERRED
)"""


@pytest.mark.django_db(transaction=True)
def test_migrated_drf_tokens_keep_working():
    user = UserFactory()
    key = "0123456789abcdef0123456789abcdef01234567"  # DRF's format: 40 hex characters
    executor = MigrationExecutor(connection)
    executor.migrate([("userconfig", "0002_api_tokens")])
    with connection.cursor() as cursor:
        cursor.execute(DRF_TOKEN_TABLE)
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, user.pk])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (user, "migrated", key[:8])
    assert token.token_hash != key
    assert "authtoken_token" not in connection.introspection.table_names()
    assert client_with(key).get("/api/v1/projects").status_code == 200
    assert client_with(key, "Bearer").get("/api/v1/projects").status_code == 200
    assert AuditEntry.objects.filter(action="api_token.import", target_id=str(token.pk)).exists()
