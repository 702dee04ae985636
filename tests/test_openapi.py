"""The OpenAPI schema matches the API: schemathesis generates requests for every operation from the
schema the app serves and sends them to the WSGI app as a signed-in user with a kubeconfig and a
project; no response may be a 5xx, and every response (status code, content type, body) must be the
one the schema documents. Bounded: a few examples per operation, well under a minute."""

import json
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.audit import SYSTEM
from projects import services
from projects.models import ProjectTask, Skill
from tests.factories import KUBECONFIG_TEMPLATE, UserFactory
from userconfig import services as user_services

EXAMPLES_PER_OPERATION = 12
# schemathesis' own strategies use `random`; nothing of ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


def _schema() -> dict[str, Any]:
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


def not_a_server_error(ctx: Any, response: Any, case: Any) -> bool:
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
    return True


schema = schemathesis.openapi.from_dict(_schema())
schema.app = get_wsgi_application()


@pytest.fixture
def world(transactional_db, settings) -> dict[str, Any]:
    """A user with a kubeconfig, a project (so ids in paths can be real) and an API token. Transactional:
    the WSGI app's requests commit, as in production. The rate limits are out of the way: an operation
    with many generated cases (POST /api/v1/projects/import) would otherwise meet its 429 (throttles
    have their own tests)."""
    settings.API_THROTTLE_RATES = {"read": "100000/minute", "lifecycle_write": "100000/minute"}
    user = UserFactory()
    user.save()
    user_services.kubeconfig_save(
        user=user, text=KUBECONFIG_TEMPLATE.format(namespace="ns-api"), actor=SYSTEM
    )
    skill = Skill.objects.create(slug="fuzz", name="Fuzz", install_command="true", uninstall_command="true")
    project = services.project_create(owner=user, name="Fuzzed", actor=SYSTEM)
    task = ProjectTask.objects.create(project=project, type="INSTALL_SKILL", skill=skill, status="FAILED")
    return {
        "token": user_services.api_token_create(user=user, name="fuzz", actor=SYSTEM)[1],
        "ids": {
            "project_id": str(project.pk),
            "sandbox_id": str(project.sandboxes.get().pk),
            "skill_id": str(skill.pk),
            "task_id": str(task.pk),
        },
        "calls": 0,
    }


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_operation_answers_as_documented(case, world):
    world["calls"] += 1
    if world["calls"] % 2 and case.path_parameters:  # every other call on the real objects
        for name, value in world["ids"].items():
            if name in case.path_parameters:
                case.path_parameters[name] = value
    response = case.call(headers={"Authorization": f"Token {world['token']}"})
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def _response_ref(operation: dict[str, Any], code: str) -> str:
    return operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]


def test_lists_are_documented_as_paginated_and_errors_with_the_error_shape():
    paths = _schema()["paths"]
    for path, name in [
        ("/api/v1/projects", "PaginatedProjectSummaryOutputList"),
        ("/api/v1/projects/{project_id}/events", "PaginatedEventOutputList"),
        ("/api/v1/projects/{project_id}/tasks", "PaginatedTaskOutputList"),
    ]:
        assert _response_ref(paths[path]["get"], "200") == f"#/components/schemas/{name}"
    assert {p["name"] for p in paths["/api/v1/projects"]["get"]["parameters"]} >= {
        "page",
        "page_size",
        "status",
        "search",
    }
    create = paths["/api/v1/projects"]["post"]
    for code in ("400", "401", "409", "413"):
        assert _response_ref(create, code) == "#/components/schemas/Error"
    assert _response_ref(paths["/api/v1/projects/{project_id}"]["get"], "404") == "#/components/schemas/Error"
    error = _schema()["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message", "details"}
