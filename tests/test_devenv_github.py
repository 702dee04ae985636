"""`make run`'s GitHub piece in isolation: scripts/devenv.py starts fakegithub with a demo installation
holding the demo repository and hands its GITHUB_* settings to web and worker; `github_link` records the
installation for the demo user, whose picker then offers the repository."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test.utils import override_settings

from github import selectors
from github.models import GitHubInstallation
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def devenv(tmp_path, monkeypatch):
    monkeypatch.setenv("TENTER_STATE_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location("devenv_under_test", ROOT / "scripts" / "devenv.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["devenv_under_test"] = module
    spec.loader.exec_module(module)
    yield module
    module.stop_children()
    sys.modules.pop("devenv_under_test", None)


@pytest.mark.django_db
def test_make_run_starts_fakegithub_with_the_demo_installation_for_the_demo_user(devenv):
    env = {**os.environ, "FAKEGITHUB_PORT": "0"}
    env.pop("GITHUB_EGRESS_ALLOW_CIDRS", None)
    values = devenv.start_fakegithub(env, web_url="http://127.0.0.1:9")
    for name in (
        "GITHUB_APP_ID",
        "GITHUB_APP_SLUG",
        "GITHUB_APP_PRIVATE_KEY",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_CLIENT_ID",
        "GITHUB_CLIENT_SECRET",
        "GITHUB_API_URL",
        "GITHUB_WEB_URL",
    ):
        assert env[name], name
    assert env["GITHUB_EGRESS_ALLOW_CIDRS"] == "127.0.0.0/8"
    assert env["GITHUB_API_URL"].startswith("http://127.0.0.1:")
    demo = UserFactory(username="demo")
    github = {k: env[k] for k in env if k.startswith("GITHUB_") and k != "GITHUB_EGRESS_ALLOW_CIDRS"}
    with override_settings(**github, GITHUB_EGRESS_ALLOW_CIDRS=["127.0.0.0/8"]):
        call_command("github_link", "demo", values["demo_installation_id"])
        row = GitHubInstallation.objects.get(user=demo)
        assert row.account_login == "demo"
        repos = selectors.repositories(installation=row)
    assert [r["full_name"] for r in repos] == [devenv.DEMO_REPOSITORY]
