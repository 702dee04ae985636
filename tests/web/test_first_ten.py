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


def test_the_terminal_panel_says_why_it_cannot_load(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    # The terminal's host does not resolve in this browser (as in `make run` without DNS for it).
    page.route(re.compile(r"^https://[^/]*-ttyd\."), lambda route: route.abort("namenotresolved"))
    project = base.open_running_project(page, live_server, user, "Offline Term")
    box = page.locator("#terminal-unreachable")
    expect(box).to_be_visible(timeout=15_000)
    expect(box).to_contain_text("The terminal cannot load in this browser")
    expect(box).to_contain_text("DNS")
    expect(box).to_contain_text("INGRESS_DOMAIN")
    expect(page.locator("#terminal")).to_be_hidden()
    expect(page.locator("#terminal iframe")).to_have_count(0)
    no_raw_text(page)
    page.screenshot(path=str(SCREENSHOTS / "test_terminal_unreachable.png"), full_page=True)

    # Stopped: no direct links to the sandbox, and no explanation lingers.
    page.locator('[data-action="stop"]').click()
    expect(page.locator("[data-live=header] [data-role=badge]")).to_have_text(
        "Stopped", timeout=base.RUNNING_TIMEOUT
    )
    # (the Open buttons of a stopped sandbox start it first: the start-on-open policy)
    expect(page.locator("[data-live=resources] a", has_text="Open ↗")).to_have_count(0)
    expect(box).to_be_hidden()
    expect(page.get_by_text("Waiting for the cluster")).to_have_count(0)
    assert project.pk


def test_an_admin_delete_asks_for_confirmation_and_the_owner_sees_it(
    page, live_server, kubesim, kube_namespace, beat
):
    from core.audit import SYSTEM
    from projects import services
    from projects.models import Project
    from sandboxes.models import ResourceEvent, Sandbox
    from tests.conftest import wait_for
    from tests.factories import UserFactory

    owner = make_user(kubesim.kubeconfig(kube_namespace))
    project = services.project_create(owner=owner, name="Operator Target", actor=SYSTEM)
    sandbox = Sandbox.objects.get(project=project)
    wait_for(lambda: Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING", timeout=30, what="running")
    operator = UserFactory(is_staff=True, is_superuser=True)
    operator.save()

    page.goto(f"{live_server.url}/admin/login/")
    expect(page).to_have_title(re.compile("Tenter"))
    page.get_by_label("Username").fill(operator.username)
    page.get_by_label("Password").fill(base.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/admin/sandboxes/sandbox/")
    page.locator(f'input[name="_selected_action"][value="{sandbox.pk}"]').check()
    page.locator('select[name="action"]').select_option("delete")
    page.get_by_role("button", name="Go").click()

    confirm = page.locator("[data-role=confirm-action]")
    expect(confirm).to_contain_text("You are about to act on 1 sandbox")
    expect(confirm.locator("[data-role=consequences]")).to_contain_text("cannot be undone")
    expect(confirm.locator("[data-role=objects]")).to_contain_text(str(sandbox))
    page.screenshot(path=str(SCREENSHOTS / "test_admin_delete_confirmation.png"), full_page=True)
    assert Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING"  # nothing happened yet
    page.get_by_role("button", name=re.compile("^Yes, delete")).click()
    expect(page.locator(".messagelist")).to_be_visible()
    event = ResourceEvent.objects.get(resource_id=sandbox.pk, to_status="TERMINATING")
    assert event.actor == "admin"

    # The owner's timeline says an operator acted.
    page.context.clear_cookies()
    sign_in(page, live_server, owner)
    # Their project list says so too, once (the project may be gone with its only sandbox).
    notice = page.locator("[data-role=operator-notice]")
    expect(notice).to_contain_text("An operator deleted the sandbox of your project “Operator Target”")
    expect(notice).to_contain_text("the project is removed with it.")
    page.screenshot(path=str(SCREENSHOTS / "test_admin_delete_owner_notice.png"), full_page=True)
    page.reload()
    expect(page.locator("[data-role=operator-notice]")).to_have_count(0)
    if Project.objects.filter(pk=project.pk).exists():
        page.goto(f"{live_server.url}/projects/{project.pk}/")
        try:
            expect(page.locator("[data-live=timeline] [data-role=operator]").first).to_have_text(
                "an operator"
            )
        except AssertionError:
            # the worker may finish the delete while the page loads: only a project still there must say so
            if Project.objects.filter(pk=project.pk).exists():
                raise


def test_counts_and_tabs_stay_right_after_creates_and_deletes(
    page, live_server, kubesim, kube_namespace, beat
):
    from core.audit import SYSTEM
    from projects import services
    from projects.models import Project

    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    count = page.locator("[data-role=count]")
    for i, name in enumerate(["Web Shop", "Blog"], start=1):
        page.get_by_role("button", name=re.compile("New project|Create a project")).first.click()
        dialog = page.locator("#create-dialog")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_role("button", name="Create project").click()
        # The user lands on the new project's page.
        expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
        page.goto(f"{live_server.url}/")
        expect(count).to_have_text(f"{i} project{'s' if i > 1 else ''} in namespace {kube_namespace}")
        expect(page.locator(".tabs .tab").first).to_have_text(f"All {i}")
        expect(page.locator(".project-card")).to_have_count(i)

    # Same name in another case: refused in words.
    page.get_by_role("button", name="New project").click()
    dialog = page.locator("#create-dialog")
    dialog.get_by_label("Name").fill("web shop")
    dialog.get_by_role("button", name="Create project").click()
    expect(dialog).to_contain_text("You already have a project named 'web shop'.")
    dialog.get_by_role("button", name="Cancel").click()

    blog = Project.objects.get(owner=user, name="Blog")
    services.project_delete(project=blog, actor=SYSTEM)
    page.reload()
    # The server-rendered partial follows the deletion without any script of ours counting.
    expect(count).to_have_text(f"1 project in namespace {kube_namespace}", timeout=30_000)
    expect(page.locator(".tabs .tab").first).to_have_text("All 1")
    expect(page.locator(".project-card")).to_have_count(1)
    tab_total = sum(int(t) for t in page.locator(".tabs .tab .count").all_inner_texts()[1:])
    assert tab_total == 1
    no_raw_text(page)
