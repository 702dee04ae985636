# ruff: noqa: E501  (the tables keep one case per line)
"""Inputs outside the schema, sent to the API and to the dashboard forms: each one is refused with a 4xx
and the usual error body (API) or a form error (dashboard), never a 500, and nothing already stored is
lost. One table per surface; each row says what it sends and what it expects."""

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.audit import SYSTEM
from core.inputs import JSON_MAX_DEPTH, load_json_body
from projects import services
from projects.models import Environment
from tests.factories import KUBECONFIG_TEMPLATE, UserFactory
from userconfig.models import ConfigKey, UserConfig

pytestmark = pytest.mark.django_db

GOOD_KUBECONFIG = KUBECONFIG_TEMPLATE.format(namespace="ns-kept")
SERVER = "https://k8s.example.test:6443"


def kubeconfig_with(old: str, new: str) -> str:
    assert old in GOOD_KUBECONFIG
    return GOOD_KUBECONFIG.replace(old, new)


def deep_yaml_flow(levels: int) -> str:
    return GOOD_KUBECONFIG + "extra: " + "[" * levels + "]" * levels + "\n"


def deep_yaml_block(levels: int) -> str:
    lines = [f"{'  ' * i}k{i}:" for i in range(levels)]
    return GOOD_KUBECONFIG + "extra:\n" + "\n".join("  " + line for line in lines) + " x\n"


def deep_json(levels: int) -> str:
    return '{"variables": ' + "[" * levels + "]" * levels + "}"


@dataclass
class Case:
    id: str
    method: str
    path: str  # {project} is the project's id
    body: Any = None  # a dict/list is sent as JSON (with \\u escapes, so lone surrogates survive)
    raw: str | None = None  # sent as is, as application/json
    status: int = 400
    code: str | None = None


def env(key: Any = "GOOD", value: Any = "x") -> dict[str, Any]:
    return {"variables": [{"key": key, "value": value}]}


API_CASES = [
    # regexes: `$` also matches before a trailing newline
    Case("env key with a trailing newline", "PUT", "/api/v1/projects/{project}/env", env("FOO\n"), code="invalid_key"),
    Case("env key with a NUL", "PUT", "/api/v1/projects/{project}/env", env("FOO\x00"), code="invalid_characters"),
    Case("env key a lone surrogate", "PUT", "/api/v1/projects/{project}/env", env("\ud800"), code="invalid_characters"),
    Case("env value with a NUL", "PUT", "/api/v1/projects/{project}/env", env(value="a\x00b"), code="invalid_characters"),
    Case("env value a lone surrogate", "PUT", "/api/v1/projects/{project}/env", env(value="\ud800"), code="invalid_characters"),
    Case("JSON key a lone surrogate", "PUT", "/api/v1/projects/{project}/env", {"\ud800": 1}, code="invalid_characters"),
    Case("JSON key with a NUL", "POST", "/api/v1/projects", {"name": "Ok", "\x00": 1}, code="invalid_characters"),
    Case("project name with a NUL", "POST", "/api/v1/projects", {"name": "Shop\x00"}, code="invalid_characters"),
    Case("project name a lone surrogate", "POST", "/api/v1/projects", {"name": "\ud800"}, code="invalid_characters"),
    Case("project name with a newline", "POST", "/api/v1/projects", {"name": "Shop\nx"}, code="invalid_name"),
    Case("description a lone surrogate", "POST", "/api/v1/projects", {"name": "Ok", "description": "\udfff"}, code="invalid_characters"),
    Case("agent model a lone surrogate", "PUT", "/api/v1/me/agent", {"model": "\ud800"}, code="invalid_characters"),
    Case("agent API key with a NUL", "PUT", "/api/v1/me/agent", {"api_key": "k\x00"}, code="invalid_characters"),
    # query parameters and path segments
    Case("search with a NUL", "GET", "/api/v1/projects?search=%00", code="invalid_characters"),
    Case("status with a NUL", "GET", "/api/v1/projects?status=RUNNING%00", code="invalid_characters"),
    Case("search with broken UTF-8", "GET", "/api/v1/projects?search=%ED%A0%80", status=200),
    Case("project id a NUL", "GET", "/api/v1/projects/%00", code="invalid_characters"),
    Case("project id broken UTF-8", "GET", "/api/v1/projects/%ED%A0%80", status=404, code="not_found"),
    Case("env key path a NUL", "DELETE", "/api/v1/projects/{project}/env/%00", code="invalid_characters"),
    Case("env key path with a newline", "DELETE", "/api/v1/projects/{project}/env/GOOD%0A", status=404, code="not_found"),
    Case("env key path far too long", "DELETE", "/api/v1/projects/{project}/env/" + "A" * 5000, status=404, code="not_found"),
    Case("database id a NUL", "GET", "/api/v1/projects/{project}/databases/%00", code="invalid_characters"),
    # nesting
    Case("JSON nested past the recursion limit", "PUT", "/api/v1/projects/{project}/env", raw=deep_json(100_000), code="too_deeply_nested"),
    Case("JSON nested past our limit", "PUT", "/api/v1/projects/{project}/env", raw=deep_json(JSON_MAX_DEPTH + 5), code="too_deeply_nested"),
    Case("JSON NaN", "POST", "/api/v1/projects", raw='{"name": NaN}', code="malformed_json"),
    # kubeconfig uploads
    Case("kubeconfig YAML nested past the recursion limit", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": deep_yaml_flow(20_000)}, code="kubeconfig_too_deep"),
    Case("kubeconfig YAML nested 60 blocks deep", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": deep_yaml_block(60)}, code="kubeconfig_too_deep"),
    Case("kubeconfig over 256 KiB", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": GOOD_KUBECONFIG + "#" * 300_000}, code="kubeconfig_too_large"),
    Case("kubeconfig with a NUL", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": GOOD_KUBECONFIG + "\x00"}, code="invalid_characters"),
    Case("kubeconfig a lone surrogate", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": GOOD_KUBECONFIG + "#\ud800"}, code="invalid_characters"),
    Case("kubeconfig server URL too long", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": kubeconfig_with(SERVER, SERVER + "/" + "a" * 600)}, code="invalid_kubeconfig"),
    Case("kubeconfig server host too long", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": kubeconfig_with(SERVER, "https://" + "a" * 300 + ".test")}, code="invalid_kubeconfig"),
    Case("kubeconfig skipping TLS verification", "PUT", "/api/v1/me/kubeconfig", {"kubeconfig": kubeconfig_with(f"server: {SERVER}", f"server: {SERVER}\n    insecure-skip-tls-verify: true")}, code="insecure_kubeconfig"),
]  # fmt: skip


@pytest.fixture
def owner(db):
    user = UserFactory()
    user.save()
    services_kubeconfig(user)
    return user


def services_kubeconfig(user) -> None:
    from userconfig import services as user_services

    user_services.kubeconfig_save(user=user, text=GOOD_KUBECONFIG, actor=SYSTEM)


@pytest.fixture
def project(owner):
    project = services.project_create(owner=owner, name="Kept", actor=SYSTEM)
    services.env_upsert(project=project, variables=[{"key": "GOOD", "value": "kept"}], actor=SYSTEM)
    return project


def _stored(project) -> dict[str, Any]:
    return {
        "env": dict(Environment.objects.filter(project=project).values_list("key", "value")),
        "kubeconfig": UserConfig.objects.get(user=project.owner, key=ConfigKey.KUBECONFIG).value,
        "projects": list(project.owner.projects.values_list("name", flat=True)),
    }


def _send(client: APIClient, case: Case, project) -> Any:
    path = case.path.format(project=project.pk)
    if case.raw is not None:
        data: str | None = case.raw
    elif case.body is not None:
        data = json.dumps(case.body)  # ensure_ascii: "\ud800" travels as an escape, as a client sends it
    else:
        data = None
    if data is None:
        return client.generic(case.method, path)
    return client.generic(case.method, path, data.encode(), content_type="application/json")


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_the_api_refuses_bad_input_with_the_error_body(owner, project, case):
    client = APIClient()
    client.force_authenticate(owner)
    before = _stored(project)
    response = _send(client, case, project)
    assert response.status_code == case.status, response.content[:500]
    if case.status >= 400:
        body = response.json()
        assert set(body) == {"code", "message", "details"}, body
        assert body["message"]
        if case.code:
            assert body["code"] == case.code, body
    assert _stored(project) == before


def test_an_oversized_api_body_is_a_413_with_the_error_body(owner, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = APIClient()
    client.force_authenticate(owner)
    response = _send(
        client, Case("big", "PUT", "/api/v1/projects/{project}/env", env(value="x" * 20_000)), project
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_a_body_without_a_length_is_bounded_by_the_parser(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    from io import BytesIO

    from core.errors import ServiceError
    from core.parsers import JSONParser

    with pytest.raises(ServiceError) as refused:
        JSONParser().parse(BytesIO(b'{"a": "' + b"x" * 1000 + b'"}'))
    assert (refused.value.status_code, refused.value.code) == (413, "request_too_large")
    assert load_json_body(b'{"a": [1, {"b": "c"}]}') == {"a": [1, {"b": "c"}]}


def test_the_environment_must_fit_in_one_secret(owner, project):
    client = APIClient()
    client.force_authenticate(owner)
    big = "x" * (30 * 1024)
    variables = [{"key": f"BIG_{i}", "value": big} for i in range(20)]
    assert (
        client.put(f"/api/v1/projects/{project.pk}/env", {"variables": variables}, format="json").status_code
        == 200
    )
    before = _stored(project)
    more = [{"key": f"MORE_{i}", "value": big} for i in range(20)]
    response = client.put(f"/api/v1/projects/{project.pk}/env", {"variables": more}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "environment_too_large"
    assert body["details"]["max_bytes"] == 1024 * 1024
    assert _stored(project) == before


# --- the dashboard ----------------------------------------------------------------------------------


@dataclass
class FormCase:
    id: str
    path: str  # {project} is the project's id
    data: dict[str, str] | None  # None: a GET
    form: str | None  # the context's form that must carry the error, or None for a plain refusal
    status: int = 400
    message: str = ""


FORM_CASES = [
    FormCase("env key with a trailing newline", "/projects/{project}/env", {"key": "FOO\n", "value": "x"}, "env_form", message="POSIX"),
    FormCase("env key with a NUL", "/projects/{project}/env", {"key": "FOO\x00", "value": "x"}, "env_form", message="Null characters"),
    FormCase("env value with a NUL", "/projects/{project}/env", {"key": "FOO", "value": "a\x00b"}, "env_form", message="Null characters"),
    FormCase("project name with a NUL", "/projects/new", {"name": "Shop\x00"}, "create_form", message="Null characters"),
    FormCase("project description with a NUL", "/projects/new", {"name": "Shop", "description": "\x00"}, "create_form", message="Null characters"),
    FormCase("kubeconfig YAML nested too deep", "/settings/kubeconfig", {"kubeconfig": deep_yaml_flow(20_000)}, "kubeconfig_form", message="levels deep"),
    FormCase("kubeconfig YAML blocks nested too deep", "/settings/kubeconfig", {"kubeconfig": deep_yaml_block(60)}, "kubeconfig_form", message="levels deep"),
    FormCase("kubeconfig over 256 KiB", "/settings/kubeconfig", {"kubeconfig": GOOD_KUBECONFIG + "#" * 300_000}, "kubeconfig_form", message="256 KiB"),
    FormCase("kubeconfig with a NUL", "/settings/kubeconfig", {"kubeconfig": GOOD_KUBECONFIG + "\x00"}, "kubeconfig_form", message="Null characters"),
    FormCase("kubeconfig server URL too long", "/settings/kubeconfig", {"kubeconfig": kubeconfig_with(SERVER, SERVER + "/" + "a" * 600)}, "kubeconfig_form", message="longer than"),
    FormCase("kubeconfig skipping TLS verification", "/settings/kubeconfig", {"kubeconfig": kubeconfig_with(f"server: {SERVER}", f"server: {SERVER}\n    insecure-skip-tls-verify: true")}, "kubeconfig_form", message="insecure-skip-tls-verify"),
    FormCase("agent model with a NUL", "/settings/agent", {"model": "m\x00"}, "agent_form", message="Null characters"),
    FormCase("search with a NUL", "/?q=%00", None, None, message="NUL"),
    FormCase("env delete of a NUL key", "/projects/{project}/env/%00/delete", {}, None, message="NUL"),
    FormCase("env delete of a key with a newline", "/projects/{project}/env/GOOD%0A/delete", {}, None, status=302),
]  # fmt: skip


@pytest.mark.parametrize("case", FORM_CASES, ids=[c.id for c in FORM_CASES])
def test_the_dashboard_shows_a_form_error_for_bad_input(owner, project, case):
    client = Client()
    client.force_login(owner)
    before = _stored(project)
    path = case.path.format(project=project.pk)
    response = client.get(path) if case.data is None else client.post(path, case.data)
    assert response.status_code == case.status, response.content[:500]
    if case.form:
        errors = " ".join(str(e) for errs in response.context[case.form].errors.values() for e in errs)
        assert case.message in errors, errors
    elif case.message:
        assert case.message in response.content.decode()
    assert _stored(project) == before


def test_an_oversized_form_is_refused_with_a_page(owner, project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = Client()
    client.force_login(owner)
    response = client.post(f"/projects/{project.pk}/env", {"key": "BIG", "value": "x" * 20_000})
    assert response.status_code == 413
    assert b"too large" in response.content


def test_the_debug_page_survives_a_lone_surrogate(rf, settings):
    import sys

    from django.views.debug import technical_500_response

    settings.DEBUG = True
    request = rf.get("/api/v1/projects")
    try:
        raise ValueError("bad \ud800 value")
    except ValueError:
        html = technical_500_response(request, *sys.exc_info())
    assert html.status_code == 500
    assert b"bad" in html.content
    request = rf.get("/api/v1/projects", HTTP_ACCEPT="text/plain")
    try:
        raise ValueError("bad \ud800 value")
    except ValueError:
        text = technical_500_response(request, *sys.exc_info())
    assert b"bad" in text.content
