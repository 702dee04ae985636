"""The cluster-facing settings are checked at start, and their defaults work on a stock cluster."""

import subprocess
import sys

import pytest
from django.conf import settings

from config import cluster


def test_defaults_work_on_a_stock_cluster():
    assert settings.INGRESS_CLASS == "nginx"
    assert settings.INGRESS_SERVER_SNIPPET is False  # ingress-nginx >= 1.9 rejects snippets by default
    assert settings.INGRESS_TLS_SECRET == ""  # the controller's default certificate
    assert settings.SANDBOX_STORAGE_CLASS == "" and settings.RUNTIME_IMAGE_PULL_SECRETS == ()


@pytest.mark.django_db
def test_the_sandbox_spec_uses_them(settings):
    from reconcile import manifests
    from reconcile.sandbox import spec_for
    from tests.factories import SandboxFactory

    settings.INGRESS_CLASS = "traefik"
    settings.INGRESS_ANNOTATIONS = {"a.example/b": "c"}
    settings.RUNTIME_IMAGE_PULL_SECRETS = ("creds",)
    spec = spec_for(SandboxFactory.build(project__owner_id=1, project__name="x"))
    ingress = manifests.ingress(spec, "app")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["metadata"]["annotations"]["a.example/b"] == "c"
    assert "nginx.ingress.kubernetes.io/server-snippet" not in ingress["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("INGRESS_CLASS", "Not A Class"),
        ("INGRESS_TLS_SECRET", "bad_name"),
        ("INGRESS_ANNOTATIONS", "[1, 2]"),
        ("INGRESS_ANNOTATIONS", '{"nginx.ingress.kubernetes.io/server-snippet": "x"}'),
        ("RUNTIME_IMAGE_PULL_SECRETS", "ok,Not-OK"),
    ],
)
def test_a_bad_value_stops_the_process_at_start_with_the_settings_name(setting, value):
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", setting: value, "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and setting in run.stderr


def test_snippets_only_when_the_operator_allows_them():
    raw = '{"nginx.ingress.kubernetes.io/configuration-snippet": "x"}'
    with pytest.raises(cluster.ClusterSettingError):
        cluster.ingress_annotations("INGRESS_ANNOTATIONS", raw, snippets_allowed=False)
    assert cluster.ingress_annotations("INGRESS_ANNOTATIONS", raw, snippets_allowed=True)
