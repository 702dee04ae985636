"""Sign in with GitHub in headless Chromium against the fake GitHub: a new identity signs up (sign-up on),
and an existing account links GitHub from Settings and then signs in with it."""

import re

import pytest
from allauth.socialaccount.models import SocialAccount
from django.test.utils import override_settings
from playwright.sync_api import expect

from tests.github.helpers import github_settings
from tests.web.test_browser import SCREENSHOTS, browser, make_user, page, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gh(fakegithub):
    with github_settings(fakegithub):
        yield fakegithub


def test_sign_in_with_github_creates_the_account_when_signup_is_on(page, live_server, gh):  # noqa: F811
    gh.signed_in = "mona"
    gh.ensure_user("mona")
    with override_settings(SIGNUP_ENABLED=True):
        page.goto(f"{live_server.url}/")
        expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "github_signin_login_page.png"))
        page.get_by_role("button", name="Sign in with GitHub").click()
        expect(page.get_by_role("heading", name="Projects")).to_be_visible()
        expect(page.locator(".user-name")).to_have_text("mona")
    account = SocialAccount.objects.get(provider="github")
    assert account.user.username == "mona"
    token_texts = list(gh.state["user_tokens"])
    assert token_texts and all(t not in page.content() for t in token_texts)


def test_link_github_from_settings_then_sign_in_with_it(page, live_server, gh):  # noqa: F811
    user = make_user()
    sign_in(page, live_server, user)
    page.goto(f"{live_server.url}/settings/")
    panel = page.locator("#github")
    panel.get_by_role("button", name="Link GitHub").click()
    expect(page).to_have_url(re.compile(r"/settings/"))
    expect(page.locator("[data-role=github-identity]")).to_contain_text("Connected as octocat")
    page.locator("#github").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "github_signin_settings_linked.png"))
    assert SocialAccount.objects.get(provider="github").user == user

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.locator(".user-name")).to_have_text(user.username)

    # Unlink: the password still works, GitHub no longer signs this user in.
    page.goto(f"{live_server.url}/settings/")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Unlink GitHub").click()
    expect(page.locator("#github").get_by_role("button", name="Link GitHub")).to_be_visible()
    assert not SocialAccount.objects.filter(user=user).exists()


def test_signup_closed_says_so_in_the_browser(page, live_server, gh):  # noqa: F811
    with override_settings(SIGNUP_ENABLED=False):
        page.goto(f"{live_server.url}/login/")
        page.get_by_role("button", name="Sign in with GitHub").click()
        expect(page.locator("[data-github-error=signup-closed]")).to_contain_text("sign-up is closed")
        page.screenshot(path=str(SCREENSHOTS / "github_signin_signup_closed.png"))
    assert not SocialAccount.objects.exists()
