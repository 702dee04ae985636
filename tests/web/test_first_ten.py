"""A newcomer's first ten minutes (issue 20), in headless Chromium against the live server, a real Celery
worker and kubesim --simulate. Each test leaves a screenshot of its final state in tests/screenshots/."""

import re

import pytest
from playwright.sync_api import Page, Route, expect

from tests.web import test_browser as base  # skips this module too when Chromium is missing

make_user, sign_in, SCREENSHOTS = base.make_user, base.sign_in, base.SCREENSHOTS
browser, page = base.browser, base.page  # the fixtures, shared with test_browser
NOT_FOUND = "We couldn\u2019t find that page"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RAW = re.compile(r"Traceback|HTTPSConnection|Errno|<[a-zA-Z_.]+ object at 0x|\w+Error\(|MaxRetryError")


def no_raw_text(page: Page) -> None:
    """No screen shows a raw exception string or a Python repr."""
    text = page.locator("body").inner_text()
    assert not RAW.search(text), RAW.search(text)


def offline(page: Page, blocked: list[str]) -> None:
    """Block every request that does not go to this machine (127.0.0.1, localhost): the network is cut."""

    def handle(route: Route) -> None:
        url = route.request.url
        if re.match(r"^https?://(127\.0\.0\.1|localhost)[:/]", url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", handle)


def test_api_docs_render_with_the_network_blocked(page, live_server, settings):
    settings.API_SCHEMA_PUBLIC = True
    blocked: list[str] = []
    offline(page, blocked)
    user = make_user()
    sign_in(page, live_server, user)
    page.get_by_role("link", name="API", exact=True).click()
    expect(page).to_have_url(re.compile(r"/api/docs/$"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tenter API", timeout=20_000)
    expect(page.locator(".opblock").first).to_be_visible()
    assert blocked == []  # nothing was even attempted outside the app


def test_not_found_is_friendly_with_debug_on(page, live_server, settings):
    settings.DEBUG = True
    user = make_user()
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/no-such-page/")
    expect(page.get_by_role("heading", name=NOT_FOUND)).to_be_visible()
    page.goto(f"{live_server.url}/projects/00000000-0000-0000-0000-000000000000/")
    expect(page.get_by_role("heading", name=NOT_FOUND)).to_be_visible()
    assert "URLconf" not in page.content()
    no_raw_text(page)


def test_a_bad_image_reaches_error_with_its_hint(page, live_server, kubesim, kube_namespace, beat, settings):
    from core.audit import SYSTEM
    from projects import services

    assert settings.POD_FAILURE_GRACE_SECONDS == 60  # "about a minute" by default; shortened here
    settings.POD_FAILURE_GRACE_SECONDS = 3
    settings.RUNTIME_IMAGE = "registry.example.test/kubesim-fail-imagepull:1"
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = services.project_create(owner=user, name="Broken Image", actor=SYSTEM)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    badge = page.locator("[data-live=header] [data-role=badge]")
    expect(badge).to_have_text("Error", timeout=30_000)  # not the 10-minute STARTING deadline
    alert = page.locator("[data-live=header] .alert-error")
    expect(alert).to_contain_text('The cluster cannot pull the sandbox image "registry.example.test/')
    expect(alert.locator("[data-role=recommend]")).to_contain_text("RUNTIME_IMAGE")
    expect(page.locator("[data-recommended]")).to_have_count(1)
    expect(page.locator('[data-action="retry"][data-recommended]')).to_be_visible()
    expect(page.locator("[data-live=timeline]")).to_contain_text("image cannot be pulled")
    no_raw_text(page)
    page.screenshot(path=str(SCREENSHOTS / "test_bad_image_detail.png"), full_page=True)
    page.goto(f"{live_server.url}/")
    card = page.locator(".project-card", has_text="Broken Image")
    expect(card.locator("[data-role=error]")).to_contain_text("cannot pull the sandbox image")


def test_an_unreachable_kubeconfig_blocks_creation_with_a_plain_message(
    page, live_server, kubesim, kube_namespace
):
    import socket

    from reconcile.checks import check_kubeconfig
    from userconfig.models import UserConfig

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = re.sub(
        r"server: https://127\.0\.0\.1:\d+",
        f"server: https://127.0.0.1:{port}",
        kubesim.kubeconfig(kube_namespace),
    )
    user = make_user(text)
    assert check_kubeconfig(user.pk)[0] == "UNREACHABLE"
    sign_in(page, live_server, user)

    hint = page.locator("[data-role=kubeconfig-failing]")
    expect(hint).to_contain_text(f"Tenter cannot reach your cluster at 127.0.0.1:{port}.")
    expect(page.locator("[data-role=onboarding-cluster]")).to_contain_text("Not working yet")
    expect(page.locator("[data-role=onboarding-cluster]")).not_to_have_class(re.compile("done"))
    page.get_by_role("button", name="Create a project").click()
    dialog = page.locator("#create-dialog")
    expect(dialog.locator("[data-role=create-blocked]")).to_contain_text(
        f"Tenter cannot reach your cluster at 127.0.0.1:{port}"
    )
    expect(dialog.get_by_role("button", name="Create project")).to_be_disabled()
    no_raw_text(page)
    page.screenshot(path=str(SCREENSHOTS / "test_unreachable_create_dialog.png"), full_page=True)
    dialog.get_by_role("link", name="Go to Settings").click()
    expect(page.locator('[data-kc="check_label"]')).to_have_text("Unreachable")
    expect(page.locator('[data-kc="server_address"]')).to_have_text(f"127.0.0.1:{port}")
    no_raw_text(page)
    assert UserConfig.objects.get(user=user).check_status == "UNREACHABLE"


def test_three_env_changes_apply_with_one_restart(page, live_server, kubesim, kube_namespace, beat):
    from projects.models import Environment
    from sandboxes.models import ResourceEvent

    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = base.open_running_project(page, live_server, user, "Env Shop")
    expect(page.locator("[data-role=env-hint]")).to_contain_text("restarts the running sandbox")

    page.locator("#env-batch summary").click()
    batch = page.locator("#env-batch-form")
    batch.get_by_label("Variables").fill(
        '# pasted from .env\nAPI_URL=https://api.example.com\nexport DEBUG=0\nGREETING="hello world"\n'
    )
    batch.get_by_role("button", name="Save all").click()
    expect(page.get_by_text("Applied 3 variables with one restart.")).to_be_visible()
    badge = page.locator("[data-live=header] [data-role=badge]")
    expect(badge).to_have_text("Running", timeout=base.RUNNING_TIMEOUT)
    values = dict(Environment.objects.filter(project=project, is_system=False).values_list("key", "value"))
    assert values == {"API_URL": "https://api.example.com", "DEBUG": "0", "GREETING": "hello world"}
    updates = ResourceEvent.objects.filter(project=project, to_status="UPDATING")
    assert updates.count() == 1
    expect(page.locator("[data-live=timeline]")).to_contain_text("configuration changed")
    expect(page.locator("[data-role=env-hint]")).to_contain_text("restarts the running sandbox")

    # Overwriting an existing key asks first; nothing changes until confirmed.
    page.locator("#env-batch summary").click()
    batch = page.locator("#env-batch-form")
    batch.get_by_label("Variables").fill("DEBUG=1\nNEW_FLAG=on\n")
    batch.get_by_role("button", name="Save all").click()
    confirm = page.locator("#env-batch-form [data-role=confirm-overwrite]")
    expect(confirm).to_contain_text("1 variable already set: DEBUG.")
    assert Environment.objects.get(project=project, key="DEBUG").value == "0"
    assert not Environment.objects.filter(project=project, key="NEW_FLAG").exists()
    no_raw_text(page)
    page.screenshot(path=str(SCREENSHOTS / "test_env_overwrite_confirm.png"), full_page=True)
    confirm.get_by_label("Replace its value").check()
    page.locator("#env-batch-form").get_by_role("button", name="Save all").click()
    expect(page.get_by_text("Applied 2 variables with one restart.")).to_be_visible()
    assert Environment.objects.get(project=project, key="DEBUG").value == "1"
    assert ResourceEvent.objects.filter(project=project, to_status="UPDATING").count() == 2

    # The single-variable form asks too.
    env = page.locator("#env-form")
    env.get_by_label("Key").fill("API_URL")
    env.get_by_label("Value").fill("https://other.example.com")
    env.get_by_role("button", name="Save variable").click()
    expect(page.locator("#env-form")).to_contain_text("API_URL is already set.")
    assert Environment.objects.get(project=project, key="API_URL").value == "https://api.example.com"
