"""Kubeconfig and agent settings: parsing at save time, encryption at rest, nothing secret echoed."""

import pytest
from django.db import connection

from core.models import AuditEntry
from tests.factories import KUBECONFIG_TEMPLATE
from userconfig.models import UserConfig

pytestmark = pytest.mark.django_db

GOOD = KUBECONFIG_TEMPLATE.format(namespace="ns-alice")


def put(api, text):
    return api.put("/api/v1/me/kubeconfig", {"kubeconfig": text}, format="json")


def test_state_before_upload(api):
    body = api.get("/api/v1/me/kubeconfig").json()
    assert body["configured"] is False


def test_save_parses_stores_encrypted_and_never_echoes(api, user):
    response = put(api, GOOD)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["configured"] is True
    assert body["namespace"] == "ns-alice"
    assert body["server_host"] == "k8s.example.test"
    assert body["check_status"] == "PENDING"
    assert "not-a-real-token" not in response.content.decode()
    assert "not-a-real-token" not in api.get("/api/v1/me/kubeconfig").content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM userconfig_userconfig WHERE user_id = %s", [user.pk])
        raw = cursor.fetchone()[0]
    assert "not-a-real-token" not in raw and "apiVersion" not in raw
    assert UserConfig.objects.get(user=user).value == GOOD
    assert AuditEntry.objects.filter(action="kubeconfig.save", actor=user).exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("clusters: [\n", "not valid YAML"),
        (GOOD.replace("    token: not-a-real-token", "    exec: {command: /bin/sh}"), "runs a local program"),
        ("just a string", "expected a YAML mapping"),
        (GOOD.replace("current-context: test", ""), "no current-context"),
        (GOOD.replace("    namespace: ns-alice\n", ""), "has no namespace"),
        (
            GOOD.replace(
                "    server: https://k8s.example.test:6443\n", "    insecure-skip-tls-verify: true\n"
            ),
            "has no server",
        ),
        (GOOD.replace("current-context: test", "current-context: other"), "context 'other' is not defined"),
        (GOOD.replace("https://k8s.example.test:6443", "ftp://x"), "not an http(s) URL"),
        (GOOD.replace("ns-alice", "Not_A_Namespace"), "is not a valid namespace name"),
        (GOOD + "#" * (256 * 1024), "larger than 256 KiB"),
    ],
)
def test_unusable_kubeconfigs_are_refused_with_the_reason(api, user, text, fragment):
    put(api, GOOD)
    response = put(api, text)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] in ("invalid_kubeconfig", "invalid", "kubeconfig_too_large")
    assert fragment in response.json()["message"]
    # what was stored before is untouched
    assert UserConfig.objects.get(user=user).namespace == "ns-alice"


def test_wrong_shapes_are_400(api):
    assert api.put("/api/v1/me/kubeconfig", {"kubeconfig": 5}, format="json").status_code == 400
    assert api.put("/api/v1/me/kubeconfig", {"kubeconfig": GOOD, "x": 1}, format="json").status_code == 400
    assert api.put("/api/v1/me/kubeconfig", {}, format="json").status_code == 400


def test_delete_removes_it(api, user):
    put(api, GOOD)
    assert api.delete("/api/v1/me/kubeconfig").status_code == 204
    assert not UserConfig.objects.filter(user=user).exists()
    assert api.delete("/api/v1/me/kubeconfig").status_code == 404


def test_agent_settings_key_is_write_only(api, user):
    response = api.put(
        "/api/v1/me/agent",
        {"base_url": "https://llm.example.test", "model": "m1", "api_key": "sk-ant-SECRET-1234"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = api.get("/api/v1/me/agent").json()
    assert body["base_url"] == "https://llm.example.test"
    assert body["model"] == "m1"
    assert body["api_key_set"] is True
    assert "SECRET" not in str(body) and "1234" not in str(body)
    # a missing field is left alone, an empty one removes the setting
    api.put("/api/v1/me/agent", {"model": ""}, format="json")
    body = api.get("/api/v1/me/agent").json()
    assert body["model"] == "" and body["api_key_set"] is True
    assert api.put("/api/v1/me/agent", {"base_url": "not a url"}, format="json").status_code == 400
    assert api.put("/api/v1/me/agent", {"colour": "red"}, format="json").status_code == 400
