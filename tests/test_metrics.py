import pytest

from tests.factories import SandboxFactory


@pytest.mark.django_db
def test_metrics_export_counts_and_lag_without_secrets(client, settings):
    SandboxFactory(status="RUNNING")
    SandboxFactory(status="CREATING")
    body = client.get("/metrics").content.decode()
    assert 'tenter_resources{kind="sandbox",status="RUNNING"} 1' in body
    assert 'tenter_resources{kind="sandbox",status="CREATING"} 1' in body
    assert 'tenter_reconcile_lag_seconds{kind="sandbox"}' in body
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
