"""A small world with one of everything, and distinctive plaintexts that must never reach admin HTML."""

from datetime import timedelta

from django.utils import timezone

from core.audit import RECONCILER, Actor
from projects.models import ProjectTask
from projects.transitions import change_status
from tests.factories import (
    KUBECONFIG_TEMPLATE,
    DatabaseFactory,
    EnvironmentFactory,
    KubeconfigFactory,
    ProjectFactory,
    SandboxFactory,
    UserFactory,
)
from userconfig import services as userconfig_services

ENV_SECRET = "env-secret-PLAINTEXT-7d1f"
DB_PASSWORD = "db-password-PLAINTEXT-93ab"
KUBE_TOKEN = "kube-token-PLAINTEXT-5c2e"
API_KEY = "sk-ant-api-key-PLAINTEXT-0e4b"
TTYD_TOKEN = "ttyd-token-PLAINTEXT-66aa"
TASK_TOKEN = "task-token-PLAINTEXT-12cd"
SECRETS = [ENV_SECRET, DB_PASSWORD, KUBE_TOKEN, API_KEY, TTYD_TOKEN, TASK_TOKEN]


def build_world() -> dict:
    owner = UserFactory(username="alice", email="alice@example.test")
    kubeconfig = KubeconfigFactory(
        user=owner,
        namespace="ns-alice",
        value=KUBECONFIG_TEMPLATE.format(namespace="ns-alice").replace("not-a-real-token", KUBE_TOKEN),
        check_message="Can manage sandboxes in namespace ns-alice.",
        checked_at=timezone.now() - timedelta(minutes=5),
    )
    userconfig_services.agent_settings_update(
        user=owner, actor=Actor(user=owner), api_key=API_KEY, model="claude-test"
    )
    api_token, api_token_secret = userconfig_services.api_token_create(
        user=owner, name="laptop", actor=Actor(user=owner)
    )
    project = ProjectFactory(owner=owner, name="Stuck Project", status="ERROR")
    sandbox = SandboxFactory(project=project, status="STARTING", k8s_namespace="ns-alice")
    change_status(sandbox, "ERROR", actor=RECONCILER, reason="deadline", message="not ready after 10 min")
    database = DatabaseFactory(
        project=project, status="RUNNING", password=DB_PASSWORD, k8s_namespace="ns-alice"
    )
    EnvironmentFactory(project=project, key="STRIPE_KEY", value=ENV_SECRET, is_secret=True, category="secret")
    EnvironmentFactory(project=project, key="PLAIN_VAR", value="visible-value")
    EnvironmentFactory(
        project=project, key="TTYD_ACCESS_TOKEN", value=TTYD_TOKEN, is_secret=True, is_system=True
    )
    task = ProjectTask.objects.create(
        project=project,
        sandbox=sandbox,
        type="CLONE_REPOSITORY",
        payload={"repo": "octo/repo", "github_token": TASK_TOKEN},
        result={"ok": False},
        error="git clone exited with 128",
    )
    return {
        "owner": owner,
        "kubeconfig": kubeconfig,
        "api_token": api_token,
        "api_token_secret": api_token_secret,
        "project": project,
        "sandbox": sandbox,
        "database": database,
        "task": task,
    }
