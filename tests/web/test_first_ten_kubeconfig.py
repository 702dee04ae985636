"""Settings protects a working kubeconfig (issue 20, item 2): a new one is checked before it replaces
the one in use, in headless Chromium against the live server and kubesim."""

import re

import pytest
from playwright.sync_api import expect

from reconcile.checks import check_kubeconfig
from tests.userconfig.test_pending_kubeconfig import unreachable
from tests.web import test_browser as base  # skips this module too when Chromium is missing
from tests.web.test_first_ten import no_raw_text
from userconfig.models import ConfigKey, UserConfig

make_user, sign_in, SCREENSHOTS = base.make_user, base.sign_in, base.SCREENSHOTS
browser, page = base.browser, base.page  # the fixtures, shared with test_browser

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_broken_new_kubeconfig_waits_and_settings_offers_discard_or_use_anyway(
    page, live_server, kubesim, kube_namespace
):
    working = kubesim.kubeconfig(kube_namespace)
    user = make_user(working)
    assert check_kubeconfig(user.pk)[0] == "OK"
    broken = unreachable(working)
    port = re.search(r"127\.0\.0\.1:(\d+)", broken).group(1)
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/settings/")
    state, pending = page.locator("#kc-state"), page.locator("#kc-pending")
    expect(page.get_by_text("the current one stays in use until the new one passes")).to_be_visible()

    def upload_broken() -> None:
        page.locator("#id_kubeconfig").fill(broken)
        page.get_by_role("button", name="Save kubeconfig").click()
        expect(pending).to_contain_text("Checking your new kubeconfig")
        expect(pending).to_contain_text(f"127.0.0.1:{port}")
        expect(state.locator('[data-kc="check_label"]')).to_have_text("Valid")  # still the old one
        check_kubeconfig(user.pk)  # what the worker runs; the page follows without a manual reload
        expect(pending).to_contain_text("Your new kubeconfig failed its check, so it was not used.")
        expect(pending).to_contain_text(f"Cannot reach the cluster at 127.0.0.1:{port}")
        expect(state.locator('[data-kc="check_label"]')).to_have_text("Valid")
        no_raw_text(page)

    upload_broken()
    page.screenshot(path=str(SCREENSHOTS / "test_kubeconfig_pending_failed.png"), full_page=True)
    page.get_by_role("button", name="Discard the new kubeconfig").click()
    expect(page.locator(".flashes")).to_contain_text(
        "New kubeconfig discarded. The current one stays in use."
    )
    expect(pending).to_be_hidden()
    assert not UserConfig.objects.filter(user=user, key=ConfigKey.KUBECONFIG_PENDING).exists()
    assert UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG).value == working

    upload_broken()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Use it anyway").click()
    expect(page.locator(".flashes")).to_contain_text("The new kubeconfig is now in use.")
    expect(pending).to_be_hidden()
    expect(state.locator('[data-kc="server_address"]')).to_have_text(f"127.0.0.1:{port}")
    expect(state.locator('[data-kc="check_label"]')).to_have_text("Unreachable")
    no_raw_text(page)
    page.screenshot(path=str(SCREENSHOTS / "test_kubeconfig_used_anyway.png"), full_page=True)
    assert UserConfig.objects.get(user=user, key=ConfigKey.KUBECONFIG).value.replace("\r\n", "\n") == broken
