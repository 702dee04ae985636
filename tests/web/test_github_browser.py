"""Import from GitHub in headless Chromium: Connect GitHub → the (fake) install page → back to Tenter →
the dialog lists the repositories → Import → the project page says Importing, then Imported, and the
repository's files are in the sandbox."""

import re

import pytest
from playwright.sync_api import expect

from fakegithub.cli import DEMO_FILES
from projects.models import Project, ProjectTask
from tests.github.helpers import github_settings
from tests.web.test_browser import SCREENSHOTS, browser, make_user, page, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gh(fakegithub, live_server):
    fakegithub.callback_url = f"{live_server.url}/github/callback"
    fakegithub.webhook_url = f"{live_server.url}/github/webhook"
    with github_settings(fakegithub):
        yield fakegithub


def test_import_the_demo_repository_through_the_dialog(page, live_server, gh, kubesim, kube_namespace, beat):  # noqa: F811
    gh.signed_in = "demo"
    gh.create_repo("demo", "hello-tenter", files=DEMO_FILES)
    gh.create_repo("demo", "other-project")
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)

    page.get_by_role("button", name="Import from GitHub").click()
    dialog = page.locator("#github-dialog")
    dialog.get_by_role("link", name="Connect GitHub").click()
    expect(page.get_by_role("heading", name="Install tenter-dev")).to_be_visible()
    page.get_by_role("button", name="Install").click()

    # Back on Tenter: the installation is recorded and the dialog opens on the picker.
    expect(page.get_by_text("GitHub connected: demo.")).to_be_visible()
    expect(dialog.get_by_text("demo/hello-tenter")).to_be_visible()
    expect(dialog.get_by_text("default: main").first).to_be_visible()
    dialog.get_by_placeholder("Search repositories…").fill("hello")
    expect(dialog.get_by_text("demo/other-project")).to_have_count(0)
    dialog.get_by_text("demo/hello-tenter").click()
    expect(dialog.get_by_label("Project name")).to_have_value("hello-tenter")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "github_import_dialog.png"))
    dialog.get_by_role("button", name="Import").click()

    expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]+/$"))
    banner = page.locator("[data-role=github-import]")
    expect(banner).to_contain_text("demo/hello-tenter")
    project = Project.objects.get(owner=user)
    task = ProjectTask.objects.get(project=project, type="CLONE_REPOSITORY")
    for _ in range(60):
        task.refresh_from_db()
        if task.status in ("SUCCEEDED", "FAILED"):
            break
        page.wait_for_timeout(1000)
    assert task.status == "SUCCEEDED", task.error
    page.reload()
    expect(page.locator("[data-role=github-import]")).to_have_attribute("data-state", "imported")
    expect(page.locator("[data-role=github-import]")).to_contain_text("Imported")
    page.screenshot(path=str(SCREENSHOTS / "github_imported_project.png"))
    page.goto(f"{live_server.url}/")
    expect(page.locator(f'[data-project="{project.pk}"] [data-role=import]')).to_contain_text("Imported")
