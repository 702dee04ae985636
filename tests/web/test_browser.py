"""The dashboard in headless Chromium against the live server, a real Celery worker and kubesim --simulate.

Each test leaves a screenshot of its final state in tests/screenshots/.
"""

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    message = (
        f"\n{'!' * 78}\n!! BROWSER TESTS SKIPPED: {CHROMIUM} is missing. Install it with:\n"
        f"!!   apt-get update -qq && apt-get install -y -qq chromium\n{'!' * 78}\n"
    )
    sys.stderr.write(message)
    pytest.skip(message, allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from core.audit import SYSTEM  # noqa: E402
from core.models import AuditEntry  # noqa: E402
from projects import services  # noqa: E402
from projects.models import Environment, Project, Skill  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.factories import UserFactory  # noqa: E402
from userconfig import services as userconfig_services  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
PASSWORD = "correct-horse-battery"
RUNNING_TIMEOUT = 30_000  # ms


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def make_user(kubeconfig_text: str | None = None):
    user = UserFactory()
    user.save()
    if kubeconfig_text:
        userconfig_services.kubeconfig_save(user=user, text=kubeconfig_text, actor=SYSTEM)
    return user


def sign_in(page: Page, live_server, user) -> None:
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def open_running_project(page: Page, live_server, user, name: str) -> Project:
    project = services.project_create(owner=user, name=name, actor=SYSTEM)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("[data-live=header] [data-role=badge]")).to_have_text(
        "Running", timeout=RUNNING_TIMEOUT
    )
    return project


def test_sign_in_and_upload_kubeconfig(page, live_server, kubesim, kube_namespace, celery_worker):
    user = make_user()
    sign_in(page, live_server, user)
    expect(page.get_by_text("Launch your first sandbox")).to_be_visible()
    page.get_by_role("link", name="Upload a kubeconfig").first.click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()

    textarea = page.locator("#id_kubeconfig")
    textarea.fill("clusters: [unclosed")
    page.get_by_role("button", name="Save kubeconfig").click()
    error = page.locator('[data-error-for="kubeconfig"]')
    expect(error).to_contain_text("Unusable kubeconfig: not valid YAML")

    textarea.fill(kubesim.kubeconfig(kube_namespace))
    page.get_by_role("button", name="Save kubeconfig").click()
    expect(error).to_be_hidden()
    state = page.locator("#kc-state")
    expect(state.locator('[data-kc="namespace"]')).to_have_text(kube_namespace)
    # The background check result arrives without a reload.
    expect(state.locator('[data-kc="check_message"]')).to_have_text(
        f"Can manage sandboxes in namespace {kube_namespace}.", timeout=20_000
    )
    expect(state.locator('[data-kc="check_label"]')).to_have_text("Valid")
    expect(textarea).to_have_value("")  # the secret does not linger in the page


def test_create_project_reaches_running_live(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    page.get_by_role("button", name="Create a project").click()
    dialog = page.locator("#create-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("9 lives")
    dialog.get_by_role("button", name="Create project").click()
    expect(dialog.locator('[data-error-for="name"]')).to_have_text("Project name must start with a letter.")

    dialog.get_by_label("Name").fill("Web Shop")
    dialog.get_by_label("Description").fill("Storefront and admin")
    dialog.get_by_role("button", name="Create project").click()
    # The user lands on the new project's page; the list shows its card.
    expect(page.get_by_role("heading", name="Web Shop", level=1)).to_be_visible()
    page.goto(f"{live_server.url}/")
    card = page.locator(".project-card", has_text="Web Shop")
    expect(card.locator("[data-role=badge]")).to_have_text(re.compile("Creating|Starting|Running"))
    expect(card.locator("[data-role=badge]")).to_have_text("Running", timeout=RUNNING_TIMEOUT)
    expect(card.locator("[data-role=resources]")).to_contain_text("Sandbox Running")
    page.set_viewport_size({"width": 390, "height": 844})  # the final screenshot at phone width


def test_project_page_terminal_env_and_database(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    # The page first checks that the browser reaches the terminal's host: here, it does.
    page.route(re.compile(r"^https://[^/]*-ttyd\."), lambda route: route.fulfill(status=200, body=""))
    project = open_running_project(page, live_server, user, "Notes App")

    # The terminal is embedded with the owner's authorised URL, fetched by JS (and audited).
    iframe = page.locator("#terminal iframe")
    expect(iframe).to_have_attribute("src", re.compile(r"-ttyd\..+\?authorization="))
    assert AuditEntry.objects.filter(action="reveal.terminal", actor=user).exists()

    env = page.locator("#env-form")
    env.get_by_label("Key").fill("API_URL")
    env.get_by_label("Value").fill("https://api.example.com")
    env.get_by_role("button", name="Save variable").click()
    expect(page.locator("[data-env-key=API_URL]")).to_contain_text("https://api.example.com")

    env.get_by_label("Key").fill("STRIPE_KEY")
    env.get_by_label("Value").fill("sk_live_very_secret")
    env.locator("#id_is_secret").check()
    env.get_by_role("button", name="Save variable").click()
    row = page.locator("[data-env-key=STRIPE_KEY]")
    expect(row).to_contain_text("••••••••")
    assert "sk_live_very_secret" not in page.content()
    row.get_by_role("button", name="Reveal").click()
    expect(row).to_contain_text("sk_live_very_secret")
    assert Environment.objects.get(project=project, key="STRIPE_KEY").is_secret

    # The env change rolled the sandbox; it comes back by itself.
    expect(page.locator("[data-live=header] [data-role=badge]")).to_have_text(
        "Running", timeout=RUNNING_TIMEOUT
    )

    page.get_by_role("button", name="Add PostgreSQL database").click()
    connection = page.locator("[data-connection]")
    expect(connection).to_be_visible(timeout=RUNNING_TIMEOUT)
    expect(connection).to_contain_text("5432")
    password = connection.locator('[data-secret="password"]')
    expect(password).to_have_text("••••••••")
    connection.locator('[data-reveal-db="password"]').click()
    expect(password).not_to_have_text("••••••••")
    expect(connection.locator('[data-reveal-db="password"]')).to_have_text("Hide")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "test_project_page_phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_stop_start_and_delete(page, live_server, kubesim, kube_namespace, beat):
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = open_running_project(page, live_server, user, "Side Project")
    badge = page.locator("[data-live=header] [data-role=badge]")

    expect(page.locator('[data-action="start"]')).to_be_disabled()
    page.locator('[data-action="stop"]').click()
    expect(badge).to_have_text("Stopped", timeout=RUNNING_TIMEOUT)
    expect(page.locator("#terminal")).to_be_hidden()
    expect(page.get_by_role("heading", name="The sandbox is stopped")).to_be_visible()

    page.locator('[data-action="start"]').click()
    expect(badge).to_have_text("Running", timeout=RUNNING_TIMEOUT)

    page.locator('[data-action="delete"]').click()
    dialog = page.locator("#delete-dialog")
    confirm = dialog.get_by_role("button", name="Delete project")
    expect(confirm).to_be_disabled()
    dialog.get_by_label(re.compile("to confirm")).fill("side project")
    expect(confirm).to_be_disabled()
    dialog.get_by_label(re.compile("to confirm")).fill("Side Project")
    confirm.click()
    expect(page.get_by_text("Deleting Side Project.")).to_be_visible()
    wait_for(lambda: not Project.objects.filter(pk=project.pk).exists(), timeout=30, what="project deleted")
    expect(page.locator(f'[data-project="{project.pk}"]')).to_have_count(0, timeout=10_000)


def test_create_an_api_token_in_settings_and_use_it(page, live_server):
    import json
    import urllib.error
    import urllib.request

    def api_status(secret: str) -> int:
        request = urllib.request.Request(
            f"{live_server.url}/api/v1/projects", headers={"Authorization": f"Bearer {secret}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                json.load(response)
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    user = make_user()
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/settings/")
    form = page.locator("#token-form")
    form.get_by_label("Name").fill("browser token")
    form.get_by_label("Expires").select_option(label="30 days")
    form.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_contain_text("shown only this once")
    secret = page.locator("#new-token-secret").inner_text().strip()
    assert api_status(secret) == 200
    row = page.locator("#token-list tr", has_text="browser token")
    expect(row).to_contain_text(secret[:8])

    page.goto(f"{live_server.url}/settings/")  # the secret is gone once the page is left
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#token-list tr", has_text="browser token").get_by_role("button", name="Revoke").click()
    expect(page.locator("#token-list")).to_have_count(0)
    assert api_status(secret) == 401
    assert (
        AuditEntry.objects.filter(action__in=["api_token.create", "api_token.revoke"], actor=user).count()
        == 2
    )


def test_enable_skills_and_watch_the_tasks_live(page, live_server, kubesim, kube_namespace, beat, settings):
    settings.TASK_BACKOFF_BASE_SECONDS = 0.3
    Skill.objects.create(
        slug="marker",
        name="Marker",
        description="Writes a marker file.",
        install_command="mkdir -p .claude/skills/marker && echo ok > .claude/skills/marker/SKILL.md",
        uninstall_command="rm -rf .claude/skills/marker",
    )
    Skill.objects.create(
        slug="broken",
        name="Broken",
        description="Its install always fails.",
        install_command='echo "npm ERR! 404 broken-skill not found" >&2; exit 1',
        uninstall_command="true",
    )
    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = open_running_project(page, live_server, user, "Skilled")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Skills").click()
    expect(page.get_by_role("heading", name="Skills", exact=True)).to_be_visible()
    for name in ("Marker", "Broken"):
        page.locator("section", has=page.get_by_role("heading", name=name)).get_by_role(
            "button", name="Enable for all projects"
        ).click()
        expect(page.get_by_text("Skill enabled")).to_be_visible()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_skills_page.png"), full_page=True)

    page.goto(f"{live_server.url}/projects/{project.pk}/")
    tasks = page.locator("#tasks")
    # refreshed live by tasks.js, without reloading the page
    expect(tasks.locator(".skill-states li", has_text="Marker")).to_contain_text("installed", timeout=30_000)
    expect(tasks.locator(".task", has_text="Broken")).to_contain_text("Failed", timeout=60_000)
    expect(tasks).to_contain_text("npm ERR! 404 broken-skill not found")
    expect(tasks.locator(".task", has_text="Broken").get_by_role("button", name="Retry")).to_be_visible()
    tasks.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "test_project_tasks_section.png"), full_page=True)


def test_opening_the_terminal_of_a_stopped_project_starts_it_and_opens_it_when_ready(
    page, live_server, kubesim, kube_namespace, beat
):
    """Start on open: "Start and open" on a stopped project starts it, a new tab shows the progress,
    and the tab goes to the terminal only once the sandbox is RUNNING (the terminal's own address is
    answered by a stub in the browser: nothing leaves the machine)."""
    from sandboxes.models import Sandbox

    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = open_running_project(page, live_server, user, "Opens Itself")
    badge = page.locator("[data-live=header] [data-role=badge]")
    page.locator('[data-action="stop"]').click()
    expect(badge).to_have_text("Stopped", timeout=RUNNING_TIMEOUT)

    seen = []  # the sandbox's status each time the browser went to the terminal's own address

    def terminal_stub(route):
        seen.append(Sandbox.objects.get(project_id=project.pk).status)
        route.fulfill(status=200, content_type="text/html", body="<h1>ttyd stub</h1>")

    page.context.route(lambda url: not url.startswith(live_server.url), terminal_stub)
    kubesim.faults(latency_ms=1500, verbs=["get"], resources=["statefulsets"])  # a slower start, to watch
    try:
        with page.context.expect_page() as opened:
            page.locator('.panel-terminal [data-open="terminal"]').click()
        tab = opened.value
        tab.set_default_timeout(RUNNING_TIMEOUT)
        expect(tab.get_by_role("heading", name="Terminal of Opens Itself")).to_be_visible()
        expect(tab.get_by_role("heading", name="Starting your sandbox")).to_be_visible()
        SCREENSHOTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / "start_on_open_progress.png"), full_page=True)
        expect(tab.get_by_role("heading", name="ttyd stub")).to_be_visible(timeout=RUNNING_TIMEOUT)
        tab.screenshot(path=str(SCREENSHOTS / "start_on_open_ready.png"), full_page=True)
    finally:
        kubesim.clear_faults()
    assert seen and set(seen) == {"RUNNING"}
    expect(badge).to_have_text("Running", timeout=RUNNING_TIMEOUT)  # the project page followed along
    assert re.search(r"-ttyd\.", tab.url) and "authorization=" in tab.url
    assert AuditEntry.objects.filter(action="project.start", target_id=str(project.pk)).exists()


def test_a_degraded_sandbox_says_so_and_the_diagnostics_panel_explains_it(
    page, live_server, kubesim, kube_namespace, beat
):
    from kubernetes import client

    from reconcile import diagnostics, verify
    from sandboxes.models import Sandbox
    from userconfig.models import UserConfig

    user = make_user(kubesim.kubeconfig(kube_namespace))
    sign_in(page, live_server, user)
    project = open_running_project(page, live_server, user, "Crashy")
    UserConfig.objects.filter(user=user).update(check_status="OK")
    sandbox = Sandbox.objects.get(project=project)
    core = client.CoreV1Api(kubesim.api_client(kube_namespace))
    pod = f"{sandbox.k8s_name}-0"
    core.patch_namespaced_pod(
        pod, kube_namespace, {"metadata": {"annotations": {"kubesim.dev/fail": "OOMKilled"}}}
    )
    wait_for(lambda: not core.read_namespaced_pod(pod, kube_namespace).status.container_statuses[0].ready)
    assert verify.verify_round().degraded == 1
    diagnostics.collect(project.pk)  # what the worker does when the page asks
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    health = page.locator("[data-role=health]")
    expect(health).to_contain_text("Degraded: running but not serving — OOMKilled: container")
    expect(page.locator("#access-title + [data-role=badge]")).to_have_text("Running · degraded")
    panel = page.locator("[data-role=diagnostics]")
    expect(panel).to_contain_text(f"Pod {pod}")
    expect(panel).to_contain_text("last terminated OOMKilled (exit 137)")
    expect(panel).to_contain_text("Recent warnings")
    panel.scroll_into_view_if_needed()
