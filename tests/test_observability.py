"""Observability (issue 18): JSON log lines carry the request id (from X-Request-ID, through the Celery
tasks the request caused) and the resource id of the reconcile step; /metrics exports step durations,
time in status, claims and HTTP requests; neither holds a secret of the project."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client

from config.logging import ContextFilter, JsonFormatter, RedactSecretsFilter
from projects.models import Environment, Project
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from userconfig.models import CheckStatus, ConfigKey, UserConfig

SECRET = "s3cr3t-Obs-VALUE-4242"


@pytest.fixture
def json_log():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("kubernetes", "urllib3", "celery", "kombu", "amqp", "redis", "asyncio", "django.db"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_logs_and_metrics_of_a_reconcile_carry_ids_and_no_secret(
    cluster_api, celery_worker, json_log, settings
):
    # the kubeconfig check holds the owner's rows while it runs: let it finish, so the kick finds the row
    wait_for(
        lambda: UserConfig.objects.filter(key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK).exists(),
        what="kubeconfig checked",
    )
    created = cluster_api.post(
        "/api/v1/projects", {"name": "Observed"}, format="json", HTTP_X_REQUEST_ID="req-obs-12345"
    )
    assert created.status_code == 202, created.json()
    assert created["X-Request-ID"] == "req-obs-12345"
    project_id = created.json()["id"]
    wait_for(
        lambda: Project.objects.filter(pk=project_id, status="RUNNING").exists(), timeout=60, what="RUNNING"
    )
    sandbox = Sandbox.objects.get(project_id=project_id)
    # every project holds secrets of its own: the terminal's token, the file manager's password
    secrets = list(
        Environment.objects.filter(project_id=project_id, is_secret=True).values_list("value", flat=True)
    )
    assert secrets

    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.strip()]
    steps = [line for line in lines if line.get("resource_id") == f"sandbox:{sandbox.pk}"]
    assert steps, lines[-20:]
    assert {"time", "level", "logger", "message"} <= set(steps[0])
    # the steps the request's kick and their follow-ups ran carry the request's id
    assert any(line.get("request_id") == "req-obs-12345" for line in steps), steps
    assert not [value for value in secrets if value in json_log.getvalue()]

    settings.METRICS_PUBLIC, settings.METRICS_TOKEN = True, ""
    scrape = Client().get("/metrics").content.decode()
    assert (
        'tenter_reconcile_step_duration_seconds_count{kind="sandbox",outcome="moved",step="creating"}'
        in scrape
    )
    assert 'tenter_time_in_status_seconds_count{kind="sandbox",status="CREATING"}' in scrape
    assert 'tenter_reconcile_claims_total{kind="sandbox"}' in scrape
    assert "tenter_queue_depth{" in scrape
    assert 'route="api/v1/projects"' in scrape
    assert not [value for value in secrets if value in scrape]
    assert str(sandbox.pk) not in scrape


@pytest.mark.django_db
def test_a_hostile_request_id_is_replaced_and_json_lines_redact(client, json_log):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    rid = response["X-Request-ID"]
    assert rid and " " not in rid and "\n" not in rid
    logging.getLogger("tenter.test").warning("connecting with password=%s", SECRET)
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert line["message"] == "connecting with password=***"
    assert SECRET not in json_log.getvalue()
