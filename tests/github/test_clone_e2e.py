"""A clone that cannot lie: import through the API → the sandbox RUNNING in kubesim → the worker clones
from the fake GitHub over git's smart HTTP with an installation token → the files are in the pod's
folder, `.git/config` holds no token; failures retry, end in "Needs attention" with git's message, and a
Retry after the fix succeeds."""

from __future__ import annotations

import pytest
from django.test import Client

from github.models import GitHubInstallation
from projects.models import Project, ProjectTask, ProjectTaskAttempt, TaskStatus, TaskType
from reconcile import runner
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from tests.github.helpers import github_settings, install_through_browser
from userconfig.models import ConfigKey, UserConfig

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FILES = {"README.md": "# Demo\n", "src/main.py": "print('hi')\n"}


@pytest.fixture
def gh(fakegithub, settings):
    settings.TASK_BACKOFF_BASE_SECONDS = 0.3
    settings.TASK_BACKOFF_MAX_SECONDS = 1.0
    settings.TASK_MAX_ATTEMPTS = 2
    with github_settings(fakegithub):
        yield fakegithub


@pytest.fixture
def installation(gh, cluster_user):
    gh.create_repo("octocat", "zz-demo", files=FILES, branches=["feature"])
    for n in range(149):  # 150 on the installation: the demo is on the second page of GitHub's list
        gh.state["repos"][f"octocat/repo-{n:03d}"] = {
            "id": 9000 + n,
            "private": True,
            "default_branch": "main",
            "description": "",
        }
    cluster_user.save()
    browser = Client()
    browser.force_login(cluster_user)
    assert install_through_browser(gh, browser).status_code == 302
    return GitHubInstallation.objects.get(user=cluster_user)


def in_pod(sandbox, script):
    config = UserConfig.objects.get(user=sandbox.project.owner, key=ConfigKey.KUBECONFIG)
    kube = runner.client_for(config).for_step(sandbox.k8s_namespace)
    from reconcile.kube.client import sh

    return kube.exec(f"{sandbox.k8s_name}-0", sh(script), container=sandbox.k8s_name, timeout=20)


def clone_task(project):
    return ProjectTask.objects.filter(project=project, type=TaskType.CLONE_REPOSITORY).get()


def import_(api, installation, **extra):
    response = api.post(
        "/api/v1/projects/import",
        {"installation_id": installation.installation_id, "repository": "octocat/zz-demo", **extra},
        format="json",
    )
    assert response.status_code == 202, response.json()
    return Project.objects.get(pk=response.json()["id"])


def test_import_clones_the_repository_into_the_sandbox(gh, installation, cluster_api, beat):
    listed = cluster_api.get(
        f"/api/v1/github/installations/{installation.installation_id}/repositories?page=2"
    )
    assert listed.json()["count"] == 150
    assert "octocat/zz-demo" in [r["full_name"] for r in listed.json()["results"]]

    project = import_(cluster_api, installation)
    detail = cluster_api.get(f"/api/v1/projects/{project.pk}").json()
    assert detail["github_import"]["state"] == "importing"
    wait_for(lambda: Project.objects.get(pk=project.pk).status == "RUNNING", timeout=60, what="RUNNING")
    wait_for(lambda: clone_task(project).status == TaskStatus.SUCCEEDED, timeout=60, what="cloned")
    sandbox = Sandbox.objects.get(project=project)
    files = in_pod(
        sandbox, 'cd "$HOME/next/import/zz-demo" && cat README.md src/main.py && git log --oneline'
    )
    assert files.ok, files.failure()
    assert "# Demo" in files.stdout and "print('hi')" in files.stdout and "Initial commit" in files.stdout
    config = in_pod(sandbox, 'cat "$HOME/next/import/zz-demo/.git/config"')
    assert f"url = {gh.base_url}/octocat/zz-demo.git" in config.stdout
    tokens = list(gh.state["tokens"])
    assert tokens
    everything = config.stdout + clone_task(project).output + clone_task(project).error
    everything += str(list(ProjectTaskAttempt.objects.values_list("output", "error")))
    assert not any(token in everything for token in tokens)
    assert "x-access-token" not in config.stdout
    detail = cluster_api.get(f"/api/v1/projects/{project.pk}").json()
    assert detail["github_import"]["state"] == "imported"
    assert clone_task(project).result["path"] == "import/zz-demo"


def test_failing_clone_retries_needs_attention_then_retry_succeeds(gh, installation, cluster_api, beat):
    gh.git_denied = True  # every token refused at the git endpoint: as a revoked token is
    project = import_(cluster_api, installation)
    wait_for(lambda: clone_task(project).status == TaskStatus.FAILED, timeout=90, what="FAILED")
    task = clone_task(project)
    assert task.attempts == 2
    assert "Failed after 2 attempts: exit 4:" in task.error
    assert "Authentication failed" in task.error  # git's own words
    detail = cluster_api.get(f"/api/v1/projects/{project.pk}").json()
    assert detail["github_import"]["state"] == "needs_attention"
    assert "Authentication failed" in detail["github_import"]["reason"]
    assert detail["status"] == "RUNNING"  # the project stays usable

    gh.git_denied = False
    retry = cluster_api.post(f"/api/v1/projects/{project.pk}/tasks/{task.pk}/retry")
    assert retry.status_code == 202, retry.json()
    wait_for(
        lambda: clone_task(project).status == TaskStatus.SUCCEEDED,
        timeout=60,
        what=f"retried: {ProjectTask.objects.filter(project=project).values()}",
    )
    sandbox = Sandbox.objects.get(project=project)
    assert in_pod(sandbox, 'test -f "$HOME/next/import/zz-demo/README.md"').ok
    assert cluster_api.get(f"/api/v1/projects/{project.pk}").json()["github_import"]["state"] == "imported"

    # A branch deleted between the import and the clone: git says so.
    other = import_(cluster_api, installation, branch="feature", name="With feature")
    gh.delete_branch("octocat/zz-demo", "feature")
    wait_for(lambda: clone_task(other).status == TaskStatus.FAILED, timeout=90, what="FAILED (branch)")
    assert "feature" in clone_task(other).error and "not found" in clone_task(other).error
