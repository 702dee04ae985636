"""Production settings: `check --deploy` is clean with nothing silenced, HSTS and secure cookies are on by
default, /metrics and the OpenAPI schema and docs are private unless opened, every page carries a
Content-Security-Policy, and a kubeconfig that turns TLS verification off needs a setting."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import KUBECONFIG_TEMPLATE, UserFactory

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "METRICS_", "API_SCHEMA_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="x" * 20 + Fernet.generate_key().decode(),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="tenter.example.com",
        DJANGO_SETTINGS_MODULE="config.settings",
        **extra,
    )
    env.pop("SECURE_COOKIES", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests' plugin; never in deployment
    return env


def test_check_deploy_is_clean_in_production():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def _production_settings(**extra: str) -> dict[str, object]:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in ["
        "'SECURE_HSTS_SECONDS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', "
        "'METRICS_PUBLIC', 'API_SCHEMA_PUBLIC', 'KUBECONFIG_ALLOW_INSECURE_TLS', 'SILENCED_SYSTEM_CHECKS']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=production_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults_are_private_and_strict_and_can_be_overridden():
    assert _production_settings() == {
        "SECURE_HSTS_SECONDS": 31536000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "METRICS_PUBLIC": False,
        "API_SCHEMA_PUBLIC": False,
        "KUBECONFIG_ALLOW_INSECURE_TLS": False,
        "SILENCED_SYSTEM_CHECKS": [],
    }
    opened = _production_settings(SECURE_HSTS_SECONDS="600", METRICS_PUBLIC="true", API_SCHEMA_PUBLIC="1")
    assert (opened["SECURE_HSTS_SECONDS"], opened["METRICS_PUBLIC"], opened["API_SCHEMA_PUBLIC"]) == (
        600,
        True,
        True,
    )


# --- who may read /metrics and the schema ----------------------------------------------------------


@pytest.fixture
def staff(db):
    user = UserFactory(is_staff=True)
    user.save()
    return user


@pytest.fixture
def member(db):
    user = UserFactory()
    user.save()
    return user


def _session(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.django_db
def test_private_metrics_need_staff_or_the_bearer_token(settings, staff, member):
    settings.METRICS_PUBLIC = False
    settings.METRICS_TOKEN = ""
    assert _session(None).get("/metrics").status_code == 401
    assert _session(member).get("/metrics").status_code == 401
    assert _session(staff).get("/metrics").status_code == 200
    settings.METRICS_TOKEN = "scrape-me"
    assert _session(None).get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert _session(None).get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    settings.METRICS_PUBLIC = True  # a token keeps it private
    assert _session(None).get("/metrics").status_code == 401
    settings.METRICS_TOKEN = ""
    assert _session(None).get("/metrics").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_private_schema_and_docs_need_staff(settings, staff, member, path):
    settings.API_SCHEMA_PUBLIC = False
    assert APIClient().get(path).status_code == 401
    assert _session(member).get(path).status_code == 403
    assert _session(staff).get(path).status_code == 200
    settings.API_SCHEMA_PUBLIC = True
    assert APIClient().get(path).status_code == 200


@pytest.mark.django_db
def test_a_refused_schema_has_the_error_body(settings):
    settings.API_SCHEMA_PUBLIC = False
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- Content-Security-Policy ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/", "/settings/", "/admin/", "/admin/overview/"])
def test_pages_carry_a_strict_csp_and_no_inline_code(staff, path):
    client = _session(staff)
    response = client.get(path, follow=True)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"  # no inline code
    assert "unsafe-inline" not in policy
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert "<style" not in html and ' style="' not in html, "an inline style"


@pytest.mark.django_db
def test_the_api_docs_page_is_self_contained_and_allows_only_its_nonce(settings, staff):
    settings.API_SCHEMA_PUBLIC = True
    response = Client().get("/api/docs/")
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce, policy
    assert "https:" not in policy.replace("frame-src https:", "")  # nothing from another site
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert f'<style nonce="{nonce.group(1)}">' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


# --- kubeconfigs that turn TLS verification off ---------------------------------------------------


@pytest.mark.django_db
def test_insecure_skip_tls_verify_needs_the_setting(api, settings):
    text = KUBECONFIG_TEMPLATE.format(namespace="ns-lab").replace(
        "    server: https://k8s.example.test:6443\n",
        "    server: https://k8s.example.test:6443\n    insecure-skip-tls-verify: true\n",
    )
    refused = api.put("/api/v1/me/kubeconfig", {"kubeconfig": text}, format="json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "insecure_kubeconfig"
    settings.KUBECONFIG_ALLOW_INSECURE_TLS = True
    assert api.put("/api/v1/me/kubeconfig", {"kubeconfig": text}, format="json").status_code == 200
