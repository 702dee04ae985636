"""Small lies (issue 20): a lifecycle flash follows the project's real state, in headless Chromium against
the live server, a real Celery worker and kubesim --simulate."""

import pytest
from playwright.sync_api import expect

from tests.web import test_browser as base  # skips this module too when Chromium is missing

make_user, sign_in, SCREENSHOTS = base.make_user, base.sign_in, base.SCREENSHOTS
browser, page = base.browser, base.page  # the fixtures, shared with test_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_stopping_flash_does_not_outlive_the_stop(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    base.open_running_project(page, live_server, user, "Web Shop")
    badge = page.locator("[data-live=header] [data-role=badge]")
    page.locator('[data-action="stop"]').click()
    flash = page.locator(".flashes .flash span").first
    expect(badge).to_have_text("Stopped", timeout=base.RUNNING_TIMEOUT)
    expect(flash).to_have_text("Web Shop is stopped.")
    expect(page.get_by_text("Stopping Web Shop.")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "test_stopping_flash_settled.png"), full_page=True)
    page.locator('[data-action="start"]').click()
    expect(badge).to_have_text("Running", timeout=base.RUNNING_TIMEOUT)
    expect(page.locator(".flashes .flash span").first).to_have_text("Web Shop is running.")
