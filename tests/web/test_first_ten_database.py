"""A database beside the user's own DATABASE_URL (issue 20): the Database panel offers another name, in
headless Chromium against the live server, a real Celery worker and kubesim --simulate."""

import pytest
from playwright.sync_api import expect

from core.audit import SYSTEM
from projects import services
from projects.models import Environment
from tests.web import test_browser as base  # skips this module too when Chromium is missing

make_user, sign_in, SCREENSHOTS = base.make_user, base.sign_in, base.SCREENSHOTS
browser, page = base.browser, base.page  # the fixtures, shared with test_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_database_panel_adds_one_under_another_name(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = base.open_running_project(page, live_server, user, "Own Db")
    services.env_upsert(
        project=project, variables=[{"key": "DATABASE_URL", "value": "postgres://mine"}], actor=SYSTEM
    )
    page.reload()
    panel = page.locator("#database")
    expect(panel.locator("[data-role=own-database-url]")).to_contain_text("Tenter never replaces it")
    expect(panel.get_by_label("Give its URL to the sandbox as")).to_have_value("TENTER_DATABASE_URL")
    page.screenshot(path=str(SCREENSHOTS / "test_database_panel_other_name.png"), full_page=True)
    panel.get_by_label("Give its URL to the sandbox as").fill("APP_DB_URL")
    panel.get_by_role("button", name="Add PostgreSQL database").click()
    expect(panel.locator("[data-role=database-env-key]")).to_have_text(
        "The sandbox gets it as APP_DB_URL.", timeout=base.RUNNING_TIMEOUT
    )
    page.screenshot(path=str(SCREENSHOTS / "test_database_panel_running_other_name.png"), full_page=True)
    assert Environment.objects.get(project=project, key="DATABASE_URL").value == "postgres://mine"
    assert Environment.objects.get(project=project, key="APP_DB_URL").is_system
